/**
 * Which host runs each `plugins:` entry: proxy-wasm (runtime/wasm PluginHost) or a component filter
 * (ComponentFilterHost). An explicit `kind` decides; otherwise a file:// module's 8-byte preamble does (version 1 is a
 * core module, layer 1 a component), and a remote module without `kind` is proxy-wasm (its loader names the fix).
 *
 * Kept free of the admission's imports (undici, jco, the Wasm host): the multi-worker primary asks this for every
 * config, with or without plugins, and must not load them.
 */
import { open } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import type { PluginConfig } from '../config/config-schema.js';

/** A component (layer 1) rather than a core module (version 1): the preamble says which. */
export function componentKind(bytes: Uint8Array): 'component' | 'core' | 'other' {
  if (bytes.length < 8 || bytes[0] !== 0x00 || bytes[1] !== 0x61 || bytes[2] !== 0x73 || bytes[3] !== 0x6d) return 'other';
  if (bytes[4] === 0x01 && bytes[5] === 0x00 && bytes[6] === 0x00 && bytes[7] === 0x00) return 'core';
  if (bytes[6] === 0x01 && bytes[7] === 0x00) return 'component';
  return 'other';
}

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
