/**
 * Which host runs each `plugins:` entry: proxy-wasm (runtime/wasm PluginHost) or a component filter
 * (ComponentFilterHost). An explicit `kind` decides; otherwise a file:// module's 8-byte preamble does (version 1 is a
 * core module, layer 1 a component), and a remote module without `kind` is proxy-wasm (its loader names the fix).
 */
import { open } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import type { PluginConfig } from '../config/config-schema.js';
import { componentKind } from './component-admission.js';

async function preambleKind(url: string): Promise<'component' | 'core' | 'other'> {
  let file;
  try {
    file = await open(fileURLToPath(url), 'r');
    const head = new Uint8Array(8);
    await file.read(head, 0, 8, 0);
    return componentKind(head);
  } catch {
    // Unreadable here: the proxy-wasm loader reports the read error with its context.
    return 'other';
  } finally {
    await file?.close();
  }
}

export async function isComponentFilter(config: PluginConfig): Promise<boolean> {
  if (config.kind !== undefined) return config.kind === 'component';
  return config.url.startsWith('file://') && (await preambleKind(config.url)) === 'component';
}

/** Splits `configs` by host, keeping each side's order. */
export async function splitPluginKinds(configs: readonly PluginConfig[]): Promise<{ wasm: PluginConfig[]; components: PluginConfig[] }> {
  const kinds = await Promise.all(configs.map(isComponentFilter));
  return { wasm: configs.filter((_, i) => !kinds[i]), components: configs.filter((_, i) => kinds[i]) };
}
