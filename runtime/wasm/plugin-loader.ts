/**
 * Turns verified module bytes into a CompiledPlugin: structural checks (magic, sections, ABI marker, memory, allocator,
 * every import known with the right signature), fuel instrumentation and memory cap, then an async compile that keeps
 * the event loop free. Every refusal is a WeftError naming the reason.
 */
import { createHash } from 'node:crypto';
import { WeftError } from '../errors.js';
import type { AbiVersion } from './abi-constants.js';
import { detectAbiVersion, UNSUPPORTED_MARKERS } from './abi-version.js';
import { FUEL_IMPORT_MODULE, instrumentModule } from './fuel-instrumenter.js';
import { HOSTCALL_SIGNATURES, TOOLCHAIN_ENV_IMPORTS } from './host-functions/host-imports.js';
import type { CompiledPlugin } from './plugin-vm.js';
import { WASI_PREVIEW1_FUNCTIONS } from './wasi.js';
import { type ModuleInfo, parseModuleInfo } from './wasm-module-info.js';

const WASI_NAMES: ReadonlySet<string> = new Set(WASI_PREVIEW1_FUNCTIONS);
const PAGE = 65536;

export interface CompileOptions {
  memoryMb: number;
  /** false compiles without the fuel counter (benchmarks only: such a module cannot be stopped). */
  meterFuel?: boolean;
}

const load = (message: string, cause?: unknown): WeftError => new WeftError('WEFT_ERR_PLUGIN_LOAD', message, { cause });

function valTypeName(t: number): string {
  return t === 0x7f ? 'i32' : t === 0x7e ? 'i64' : t === 0x7d ? 'f32' : t === 0x7c ? 'f64' : `0x${t.toString(16)}`;
}

export function validateImports(info: ModuleInfo): void {
  for (const imp of info.imports) {
    const where = `${imp.module}.${imp.name}`;
    if (imp.module === FUEL_IMPORT_MODULE) throw load(`imports ${where}, a name reserved for weft's instrumentation`);
    if (imp.kind === 'memory') throw load(`imports its memory (${where}); a proxy-wasm module must define and export "memory"`);
    if (imp.kind !== 'func') throw load(`imports ${imp.kind} ${where}; only functions are provided`);
    if (imp.module === 'wasi_snapshot_preview1' || imp.module === 'wasi_unstable') {
      if (!WASI_NAMES.has(imp.name)) throw load(`imports unknown WASI function ${where}`);
      continue;
    }
    if (imp.module !== 'env') throw load(`imports ${where} from unknown module "${imp.module}" (only env, wasi_snapshot_preview1 and wasi_unstable exist)`);
    if (TOOLCHAIN_ENV_IMPORTS.has(imp.name)) continue;
    const expected = HOSTCALL_SIGNATURES[imp.name];
    if (expected === undefined) throw load(`imports unknown host function ${where}`);
    const sig = info.types[imp.typeIndex];
    const got = sig?.params.map((t) => (t === 0x7f ? 'i' : t === 0x7e ? 'I' : '?')).join('') ?? '?';
    if (got !== expected) {
      const want = [...expected].map((c) => (c === 'i' ? 'i32' : 'i64')).join(', ');
      throw load(`imports ${where} with parameters (${sig?.params.map(valTypeName).join(', ') ?? '?'}); the ABI defines (${want})`);
    }
  }
}

export function validateExports(info: ModuleInfo): AbiVersion {
  const names = info.exports.map((e) => e.name);
  const abi = detectAbiVersion(names);
  if (abi === undefined) {
    const other = names.find((n) => UNSUPPORTED_MARKERS.includes(n));
    throw load(other !== undefined ? `exports ${other}, an ABI this host does not run (supported: 0.2.1, 0.2.0, 0.1.0)` : 'exports no proxy_abi_version_* marker: not a proxy-wasm module (or built for an unknown ABI version)');
  }
  const memory = info.exports.find((e) => e.name === 'memory');
  if (memory === undefined || memory.kind !== 'memory') throw load('does not export its linear memory as "memory"');
  if (!names.includes('proxy_on_memory_allocate') && !names.includes('malloc')) {
    throw load('exports neither proxy_on_memory_allocate nor malloc, so the host cannot hand it data');
  }
  return abi;
}

/** Whether the module imports i64 metric hostcalls, each returning one i32 as the ABI says (validateImports checks only parameters). */
function hasExactMetricImports(info: ModuleInfo): boolean {
  let found = false;
  for (const imp of info.imports) {
    if (imp.module !== 'env' || (imp.name !== 'proxy_increment_metric' && imp.name !== 'proxy_record_metric')) continue;
    const results = info.types[imp.typeIndex]?.results;
    if (results?.length !== 1 || results[0] !== 0x7f) return false;
    found = true;
  }
  return found;
}

export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

export async function compilePlugin(bytes: Uint8Array, options: CompileOptions): Promise<CompiledPlugin> {
  const info = parseModuleInfo(bytes);
  const abi = validateExports(info);
  validateImports(info);
  if (info.memory === undefined) throw load('defines no memory');
  const capPages = Math.max(1, Math.floor((options.memoryMb * 1024 * 1024) / PAGE));
  const instrumented = instrumentModule(bytes, info, { maxMemoryPages: capPages, meterFuel: options.meterFuel ?? true });
  let module: WebAssembly.Module;
  try {
    module = await WebAssembly.compile(instrumented);
  } catch (err) {
    throw load(`does not compile: ${(err as Error).message}`, err);
  }
  return {
    module,
    abi,
    sha256: sha256Hex(bytes),
    size: bytes.length,
    exportNames: new Set(info.exports.map((e) => e.name)),
    maxMemoryBytes: Math.min(info.memory.max ?? capPages, capPages) * PAGE,
    splitI64Metrics: hasExactMetricImports(info),
  };
}
