/** Fetches plugin module bytes from file://, https:// or oci:// URLs (the schemes Istio's WasmPlugin accepts). */
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import type * as Undici from 'undici';
import type { Agent } from 'undici';
import { lazyUndici } from '../lazy-packages.js';
import { WeftError } from '../errors.js';

export interface FetchOptions {
  /** Extra CA certificates (PEM) trusted for https:// and TLS registries. */
  ca?: string | Buffer | (string | Buffer)[];
  /** Per-fetch deadline; default 30 s. */
  timeoutMs?: number;
  /** Registries (`host:port`) reached over plain HTTP; loopback registries always are, as containerd does. */
  insecureRegistries?: string[];
  /** Maximum module size; default 64 MiB. */
  maxBytes?: number;
}

export interface Fetched {
  bytes: Uint8Array;
  /** For oci://: the manifest digest (hex), which a configured sha256 may name instead of the module's. */
  digest?: string;
}

const DEFAULT_TIMEOUT_MS = 30_000;
export const DEFAULT_MAX_MODULE_BYTES = 64 * 1024 * 1024;

export function fetchError(url: string, reason: string, cause?: unknown): WeftError {
  return new WeftError('WEFT_ERR_PLUGIN_LOAD', `fetching ${url}: ${reason}`, { cause });
}

/** An undici dispatcher trusting `ca`, shared by https and registry fetches of one load; made (and undici loaded) only if one of them fetches over the network. */
export class Dispatcher {
  readonly #ca: FetchOptions['ca'];
  #agent: Agent | undefined;

  constructor(ca: FetchOptions['ca']) {
    this.#ca = ca;
  }

  get agent(): Agent {
    this.#agent ??= new (lazyUndici().Agent)({ connect: this.#ca === undefined ? {} : { ca: this.#ca }, connections: 4 });
    return this.#agent;
  }

  async close(): Promise<void> {
    await this.#agent?.close();
  }
}

export function createDispatcher(options: FetchOptions): Dispatcher {
  return new Dispatcher(options.ca);
}

export async function fetchModule(url: string, options: FetchOptions, dispatcher: Dispatcher): Promise<Fetched> {
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_MODULE_BYTES;
  const signal = AbortSignal.timeout(options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  if (url.startsWith('file://')) {
    try {
      const bytes = new Uint8Array(await readFile(fileURLToPath(url), { signal }));
      if (bytes.length > maxBytes) throw fetchError(url, `module is ${bytes.length} bytes, over the ${maxBytes}-byte limit`);
      return { bytes };
    } catch (err) {
      if (err instanceof WeftError) throw err;
      throw fetchError(url, (err as Error).message, err);
    }
  }
  if (url.startsWith('https://')) return { bytes: await fetchBytes(url, dispatcher, signal, maxBytes, {}) };
  // The registry client (and node:zlib for its layers) loads with the first oci:// plugin.
  if (url.startsWith('oci://')) return (await import('./oci-fetcher.js')).fetchOciModule(url, options, dispatcher, signal, maxBytes);
  throw fetchError(url, 'unsupported scheme (use file://, https:// or oci://)');
}

/** GET `url` and return the body, refusing non-2xx answers and bodies over `maxBytes`. */
export async function fetchBytes(url: string, dispatcher: Dispatcher, signal: AbortSignal, maxBytes: number, headers: Record<string, string>): Promise<Uint8Array> {
  let res: Awaited<ReturnType<typeof Undici.fetch>>;
  try {
    res = await lazyUndici().fetch(url, { dispatcher: dispatcher.agent, signal, headers });
  } catch (err) {
    const cause = (err as { cause?: unknown }).cause;
    throw fetchError(url, cause instanceof Error ? cause.message : (err as Error).message, err);
  }
  if (!res.ok) {
    await res.body?.cancel();
    throw fetchError(url, `server answered ${res.status} ${res.statusText}`);
  }
  const declared = Number(res.headers.get('content-length') ?? 0);
  if (declared > maxBytes) {
    await res.body?.cancel();
    throw fetchError(url, `module is ${declared} bytes, over the ${maxBytes}-byte limit`);
  }
  const bytes = new Uint8Array(await res.arrayBuffer());
  if (bytes.length > maxBytes) throw fetchError(url, `module is ${bytes.length} bytes, over the ${maxBytes}-byte limit`);
  return bytes;
}
