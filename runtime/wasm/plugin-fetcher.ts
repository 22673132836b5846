/** Fetches plugin module bytes from file://, https:// or oci:// URLs (the schemes Istio's WasmPlugin accepts). */
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { Agent, fetch } from 'undici';
import { WeftError } from '../errors.js';
import { fetchOciModule } from './oci-fetcher.js';

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

/** An undici dispatcher trusting `ca`, shared by https and registry fetches of one load. */
export function createDispatcher(options: FetchOptions): Agent {
  return new Agent({ connect: options.ca === undefined ? {} : { ca: options.ca }, connections: 4 });
}

export async function fetchModule(url: string, options: FetchOptions, dispatcher: Agent): Promise<Fetched> {
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
  if (url.startsWith('oci://')) return fetchOciModule(url, options, dispatcher, signal, maxBytes);
  throw fetchError(url, 'unsupported scheme (use file://, https:// or oci://)');
}

/** GET `url` and return the body, refusing non-2xx answers and bodies over `maxBytes`. */
export async function fetchBytes(url: string, dispatcher: Agent, signal: AbortSignal, maxBytes: number, headers: Record<string, string>): Promise<Uint8Array> {
  let res: Awaited<ReturnType<typeof fetch>>;
  try {
    res = await fetch(url, { dispatcher, signal, headers });
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
