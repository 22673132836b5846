/**
 * Admission of a component (a function, or a typed L7 filter): fetch, verify sha256, refuse what is not a component of
 * the expected world, transpile once with jco (cached on disk by sha256, so a restart skips it), cap each core memory
 * (filters: also meter fuel) and compile the core modules once. Every refusal is a WeftError naming the reason.
 */
import { mkdir, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { threadId } from 'node:worker_threads';
import { WeftError, type ErrorCode } from '../errors.js';
import { sha256Hex } from '../wasm/plugin-loader.js';
import { componentKind } from './plugin-kind.js';
import { createDispatcher, fetchModule } from '../wasm/plugin-fetcher.js';
import { parseModuleInfo } from '../wasm/wasm-module-info.js';
import { instrumentModule } from '../wasm/fuel-instrumenter.js';
import { capMemory, definedMemoryPages } from './memory-cap.js';
import { transpileOffThread, type Transpiled } from './transpile-thread.js';

/** What the worker's WASI host provides; a component importing anything else is refused at admission. */
export const PROVIDED_IMPORTS: ReadonlySet<string> = new Set([
  'wasi:cli/environment',
  'wasi:cli/exit',
  'wasi:cli/stdin',
  'wasi:cli/stdout',
  'wasi:cli/stderr',
  'wasi:cli/terminal-input',
  'wasi:cli/terminal-output',
  'wasi:cli/terminal-stdin',
  'wasi:cli/terminal-stdout',
  'wasi:cli/terminal-stderr',
  'wasi:clocks/monotonic-clock',
  'wasi:clocks/wall-clock',
  'wasi:filesystem/preopens',
  'wasi:filesystem/types',
  'wasi:io/error',
  'wasi:io/poll',
  'wasi:io/streams',
  'wasi:random/random',
  'wasi:random/insecure',
  'wasi:random/insecure-seed',
  'wasi:http/types',
  'wasi:http/outgoing-handler',
]);

/** What a filter may import: the world has no I/O, so the host can call it on the event loop. */
const FILTER_IMPORTS: ReadonlySet<string> = new Set(['weft:filter/host', 'weft:filter/types']);

const PAGE = 65536;
const HANDLER_EXPORT = /^wasi:http\/incoming-handler@0\.2\.\d+$/;
const FILTER_EXPORT = /^weft:filter\/filter@0\.1\.\d+$/;
export const BODY_FILTER_EXPORT = /^weft:filter\/body-filter@0\.1\.\d+$/;

/** Which world admission checks a component against: a function (worker threads) or an L7 filter (the event loop). */
export type AdmittedWorld = 'function' | 'filter';

export interface CompiledFunction {
  sha256: string;
  size: number;
  /** file: URL of the transpiled JS glue. */
  jsUrl: string;
  modules: Record<string, WebAssembly.Module>;
  imports: string[];
  memoryCapBytes: number;
  /** The component's exports as jco names them (`weft:filter/body-filter@0.1.0`, ...). */
  exports: string[];
  /** Whether the transpile came from the disk cache. */
  cached: boolean;
  transpileMs: number;
  compileMs: number;
}

const refuse = (message: string, cause?: unknown, code: ErrorCode = 'WEFT_ERR_FN_LOAD'): WeftError => new WeftError(code, message, { cause });

/** The default cache directory: $WEFT_CACHE_DIR/functions, else ~/.cache/weft/functions. */
export function defaultFunctionCacheDir(): string {
  return join(process.env.WEFT_CACHE_DIR ?? join(os.homedir(), '.cache', 'weft'), 'functions');
}

export async function fetchComponent(url: string, sha256: string | undefined): Promise<{ bytes: Uint8Array; sha256: string }> {
  const dispatcher = createDispatcher({});
  let bytes: Uint8Array;
  try {
    ({ bytes } = await fetchModule(url, { maxBytes: 256 * 1024 * 1024 }, dispatcher));
  } catch (err) {
    throw refuse(err instanceof Error ? err.message : String(err), err);
  } finally {
    await dispatcher.close();
  }
  const actual = sha256Hex(bytes);
  if (sha256 !== undefined && sha256 !== actual) throw refuse(`sha256 mismatch for ${url}: configured ${sha256}, fetched ${actual}; fix the sha256 or the URL`);
  return { bytes, sha256: actual };
}

function checkShape(bytes: Uint8Array, world: AdmittedWorld): void {
  const kind = componentKind(bytes);
  if (kind === 'core' && world === 'filter') {
    throw refuse('a core WebAssembly module given as a component filter (kind: component): a proxy-wasm module runs as it is under plugins: without kind: component; a component filter is built for the weft:filter/http-filter world (weft fn build --filter)', undefined, 'WEFT_ERR_PLUGIN_LOAD');
  }
  if (kind === 'core') throw refuse('a core WebAssembly module, not a component: build it as a wasi:http component (jco componentize, cargo --target wasm32-wasip2), or attach it under plugins: if it is a proxy-wasm filter');
  if (kind === 'other') throw refuse('not a WebAssembly component (bad preamble)');
}

function exportedWorlds(exported: readonly string[]): string {
  return exported.length === 0 ? 'nothing' : exported.filter((n) => n.includes(':')).join(', ') || exported.join(', ');
}

function checkWorld(t: Pick<Transpiled, 'imports' | 'exports'>, world: AdmittedWorld): void {
  const exported = t.exports.map(([name]) => name);
  if (world === 'filter') {
    if (!exported.some((n) => FILTER_EXPORT.test(n))) {
      throw refuse(`wrong world: the component exports ${exportedWorlds(exported)}; a component filter must export weft:filter/filter@0.1.x (world weft:filter/http-filter or http-body-filter, sdk/wit/weft-filter.wit)`, undefined, 'WEFT_ERR_PLUGIN_LOAD');
    }
    const io = t.imports.filter((i) => !FILTER_IMPORTS.has(i));
    if (io.length > 0) {
      throw refuse(`imports ${io.join(', ')}: a component filter runs on the event loop and may import only weft:filter/host (no I/O); build it with every componentize-js feature disabled (weft fn build --filter), or serve it as a function`, undefined, 'WEFT_ERR_PLUGIN_LOAD');
    }
    return;
  }
  if (!exported.some((n) => HANDLER_EXPORT.test(n))) {
    throw refuse(`wrong world: the component exports ${exportedWorlds(exported)}; a function must export wasi:http/incoming-handler@0.2.x (world wasi:http/proxy)`);
  }
  const unknown = t.imports.filter((i) => !PROVIDED_IMPORTS.has(i));
  if (unknown.length > 0) {
    throw refuse(`imports ${unknown.join(', ')}, which weft does not provide to functions (no raw sockets: outbound traffic goes through wasi:http/outgoing-handler)`);
  }
}

interface CacheMeta {
  imports: string[];
  exports: [string, string][];
  files: string[];
}

/** Transpiles in progress by sha256: two functions built from one component share one transpile. */
const inFlight = new Map<string, ReturnType<typeof transpileOnce>>();

/** The transpiled files for `sha256`: from `dir` when a previous run left them, else jco now (then stored). */
function transpiled(dir: string, sha256: string, bytes: Uint8Array): ReturnType<typeof transpileOnce> {
  const key = join(dir, sha256);
  let p = inFlight.get(key);
  if (p === undefined) {
    p = transpileOnce(dir, sha256, bytes).finally(() => inFlight.delete(key));
    inFlight.set(key, p);
  }
  return p;
}

async function transpileOnce(dir: string, sha256: string, bytes: Uint8Array): Promise<{ meta: CacheMeta; root: string; cached: boolean; ms: number }> {
  const root = join(dir, sha256);
  try {
    const meta = JSON.parse(await readFile(join(root, 'meta.json'), 'utf8')) as CacheMeta;
    return { meta, root, cached: true, ms: 0 };
  } catch {
    // Not cached (or a partial entry): transpile below.
  }
  const started = performance.now();
  let t: Transpiled;
  try {
    t = await transpileOffThread(bytes);
  } catch (err) {
    throw refuse(`jco cannot transpile it: ${err instanceof Error ? err.message : String(err)}`, err);
  }
  const ms = performance.now() - started;
  // Written under a temporary name and renamed, so a crash never leaves a half entry that looks complete.
  const tmp = `${root}.tmp-${process.pid}-${threadId}-${Date.now()}`;
  await rm(tmp, { recursive: true, force: true });
  const files = t.files.filter(([name]) => name.endsWith('.js') || name.endsWith('.wasm'));
  for (const [name, content] of files) {
    await mkdir(dirname(join(tmp, name)), { recursive: true });
    await writeFile(join(tmp, name), content);
  }
  const meta: CacheMeta = { imports: t.imports, exports: t.exports, files: files.map(([n]) => n) };
  // ESM glue: the folder needs to be a module scope of its own, whatever package.json sits above the cache.
  await writeFile(join(tmp, 'package.json'), '{"type":"module"}');
  await writeFile(join(tmp, 'meta.json'), JSON.stringify(meta));
  await rm(root, { recursive: true, force: true });
  await rename(tmp, root);
  return { meta, root, cached: false, ms };
}

/**
 * Fetch-independent part of admission: verify the shape, transpile (or reuse), check the world, cap and compile. A
 * filter's cores are also fuel-metered (runtime/wasm/fuel-instrumenter.ts): it runs on the event loop, where only the
 * host's fuel callback can stop a loop; they then import `__weft` (refill_fuel, memory_grow) besides the glue's imports.
 */
export async function admitComponent(bytes: Uint8Array, sha256: string, memoryMb: number, cacheDir: string, world: AdmittedWorld = 'function'): Promise<CompiledFunction> {
  checkShape(bytes, world);
  await mkdir(cacheDir, { recursive: true });
  const t = await transpiled(cacheDir, sha256, bytes);
  checkWorld(t.meta, world);
  const started = performance.now();
  const wasmNames = t.meta.files.filter((n) => n.endsWith('.wasm'));
  const cores = await Promise.all(wasmNames.map(async (n) => [n, new Uint8Array(await readFile(join(t.root, n)))] as const));
  const withMemory = cores.filter(([, b]) => b.length > 0 && definedMemoryPages(b) !== undefined).length;
  const capBytes = memoryMb * 1024 * 1024;
  const sharePages = Math.max(1, Math.floor(capBytes / PAGE / Math.max(1, withMemory)));
  const modules: Record<string, WebAssembly.Module> = {};
  for (const [name, core] of cores) {
    if (core.length === 0) continue;
    try {
      const prepared = world === 'filter' ? instrumentModule(core, parseModuleInfo(core), { maxMemoryPages: sharePages }) : capMemory(core, sharePages, `core module ${name}`);
      modules[name] = await WebAssembly.compile(prepared);
    } catch (err) {
      if (err instanceof WeftError) throw err;
      throw refuse(`core module ${name} does not compile: ${(err as Error).message}`, err);
    }
  }
  return {
    sha256,
    size: bytes.length,
    jsUrl: pathToFileURL(join(t.root, 'component.js')).href,
    modules,
    imports: t.meta.imports,
    exports: t.meta.exports.map(([name]) => name),
    memoryCapBytes: capBytes,
    cached: t.cached,
    transpileMs: t.ms,
    compileMs: performance.now() - started,
  };
}

/** Cache entries whose sha256 no configured function uses any more (left for an operator's cleanup; listed for /config_dump). */
export async function cachedShas(cacheDir: string): Promise<string[]> {
  try {
    return (await readdir(cacheDir)).filter((n) => /^[0-9a-f]{64}$/.test(n));
  } catch {
    return [];
  }
}
