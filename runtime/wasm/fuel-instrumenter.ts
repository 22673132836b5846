/**
 * Rewrites a module at load so it can be stopped: a fuel counter (a new mutable i32 global) is charged at every function
 * entry and loop header with the instruction count of that straight-line region, and when it goes negative the module
 * calls the imported `__weft.refill_fuel`, which either refills it or throws once the callback's CPU budget is spent.
 * The memory's maximum is capped at the plugin's limit in the same pass, and `memory.grow` becomes a call to the
 * imported `__weft.memory_grow`, so the host knows when a trap follows a refused growth (memory exhaustion).
 */
import { WeftError } from '../errors.js';
import { type MeterPlan, summarizeCode, tableFunctions, writeMeteredCode } from './fuel-metering.js';
import { InstrKind, decoded, readInstruction } from './wasm-instructions.js';
import { type ModuleInfo, SectionId, readValType } from './wasm-module-info.js';
import { WasmReader } from './wasm-reader.js';
import { WasmWriter } from './wasm-writer.js';

export const FUEL_IMPORT_MODULE = '__weft';
export const FUEL_IMPORT_NAME = 'refill_fuel';
export const GROW_IMPORT_NAME = 'memory_grow';
/**
 * A module's start function becomes this export: the host calls it right after instantiation, once it holds the
 * instance's memory (a start section runs inside `new WebAssembly.Instance`, before `memory.grow` could be served).
 */
export const START_EXPORT_NAME = '__weft_start';

export interface InstrumentOptions {
  /** Cap for the memory's maximum, in 64 KiB pages. */
  maxMemoryPages: number;
  /** false leaves code untouched (used by the benchmark to measure the instrumentation's cost). */
  meterFuel?: boolean;
}

/** Binary order of known sections (custom sections may go anywhere). */
const RANK: Record<number, number> = { 1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 13: 6, 6: 7, 7: 8, 8: 9, 9: 10, 12: 11, 10: 12, 11: 13 };

export function instrumentModule(bytes: Uint8Array, info: ModuleInfo, options: InstrumentOptions): Uint8Array {
  const meter = options.meterFuel !== false;
  const fuelType = info.types.length;
  const growType = fuelType + 1;
  const voidType = fuelType + 2;
  const chargeType = fuelType + 3;
  const refillFunc = info.importedFuncs;
  const growFunc = refillFunc + 1;
  const fuelGlobal = info.importedGlobals + info.definedGlobals;
  const shift = (idx: number): number => (meter && idx >= refillFunc ? idx + 2 : idx);
  const elementSpan = info.sections.find((x) => x.id === SectionId.Element);
  const tableFuncs = meter ? tableFunctions(bytes, elementSpan === undefined ? undefined : { start: elementSpan.payloadStart, end: elementSpan.end }) : new Set<number>();
  const plan: MeterPlan = {
    fuelGlobal,
    refillFunc,
    growFunc,
    importedFuncs: info.importedFuncs,
    paramCounts: info.functionTypes.map((t) => info.types[t]?.params.length ?? 0),
    shift,
    slowLoopFunc: refillFunc + 2 + info.functionTypes.length,
    slowEntryFunc: refillFunc + 3 + info.functionTypes.length,
  };

  const out = new WasmWriter(bytes.length + bytes.length / 4 + 64);
  out.bytes(bytes.subarray(0, 8));
  const present = new Set(info.sections.map((s) => s.id));
  const startSection = info.sections.find((x) => x.id === SectionId.Start);
  const startFunc = meter && startSection !== undefined ? new WasmReader(bytes, startSection.payloadStart, startSection.end).u32() : undefined;
  if (startFunc !== undefined && info.exports.some((e) => e.name === START_EXPORT_NAME)) {
    throw new WeftError('WEFT_ERR_PLUGIN_LOAD', `exports ${START_EXPORT_NAME}, a name reserved for weft's instrumentation`);
  }
  const pending: { rank: number; emit: () => void }[] = [];
  if (meter) {
    if (!present.has(SectionId.Type)) pending.push({ rank: RANK[SectionId.Type]!, emit: () => out.section(SectionId.Type, (w) => writeTypes(w, undefined)) });
    if (!present.has(SectionId.Import)) pending.push({ rank: RANK[SectionId.Import]!, emit: () => out.section(SectionId.Import, (w) => writeImports(w, undefined)) });
    if (!present.has(SectionId.Global)) pending.push({ rank: RANK[SectionId.Global]!, emit: () => out.section(SectionId.Global, (w) => writeGlobals(w, undefined)) });
    if (!present.has(SectionId.Export) && startFunc !== undefined) pending.push({ rank: RANK[SectionId.Export]!, emit: () => out.section(SectionId.Export, (w) => writeExports(w)) });
  }
  const flushBefore = (rank: number): void => {
    while (pending.length > 0 && pending[0]!.rank < rank) pending.shift()!.emit();
  };

  function writeTypes(w: WasmWriter, r: WasmReader | undefined): void {
    const n = r === undefined ? 0 : r.u32();
    w.u32(n + 4);
    if (r !== undefined) w.bytes(r.bytes.subarray(r.pos, r.end));
    w.bytes(Uint8Array.of(0x60, 0x00, 0x01, 0x7f)); // () -> i32
    w.bytes(Uint8Array.of(0x60, 0x01, 0x7f, 0x01, 0x7f)); // (i32) -> i32
    w.bytes(Uint8Array.of(0x60, 0x00, 0x00)); // () -> ()
    w.bytes(Uint8Array.of(0x60, 0x01, 0x7f, 0x00)); // (i32) -> ()
  }
  function writeImports(w: WasmWriter, r: WasmReader | undefined): void {
    const n = r === undefined ? 0 : r.u32();
    w.u32(n + 2);
    if (r !== undefined) w.bytes(r.bytes.subarray(r.pos, r.end));
    w.name(FUEL_IMPORT_MODULE);
    w.name(FUEL_IMPORT_NAME);
    w.byte(0x00);
    w.u32(fuelType);
    w.name(FUEL_IMPORT_MODULE);
    w.name(GROW_IMPORT_NAME);
    w.byte(0x00);
    w.u32(growType);
  }
  function writeExports(w: WasmWriter): void {
    w.u32(info.exports.length + (startFunc === undefined ? 0 : 1));
    for (const e of info.exports) {
      w.name(e.name);
      w.byte(['func', 'table', 'memory', 'global', 'tag'].indexOf(e.kind));
      w.u32(e.kind === 'func' ? shift(e.index) : e.index);
    }
    if (startFunc !== undefined) {
      w.name(START_EXPORT_NAME);
      w.byte(0x00);
      w.u32(shift(startFunc));
    }
  }
  function writeGlobals(w: WasmWriter, r: WasmReader | undefined): void {
    const n = r === undefined ? 0 : r.u32();
    w.u32(n + 1);
    for (let i = 0; i < n && r !== undefined; i++) {
      const start = r.pos;
      readValType(r);
      r.u8();
      w.bytes(r.bytes.subarray(start, r.pos));
      copyExpr(r, w, shift);
    }
    w.bytes(Uint8Array.of(0x7f, 0x01, 0x41, 0x00, 0x0b)); // (mut i32) (i32.const 0): the first check refills
  }

  for (const s of info.sections) {
    const r = new WasmReader(bytes, s.payloadStart, s.end);
    const raw = (): void => out.bytes(bytes.subarray(s.start, s.end));
    if (s.id === SectionId.Custom) {
      // The name section maps function indices to names; they shift, so drop it rather than mislabel frames.
      if (meter && new WasmReader(bytes, s.payloadStart, s.end).name() === 'name') continue;
      raw();
      continue;
    }
    flushBefore(RANK[s.id] ?? 99);
    switch (s.id) {
      case SectionId.Type:
        if (meter) out.section(s.id, (w) => writeTypes(w, r));
        else raw();
        break;
      case SectionId.Import:
        if (meter) out.section(s.id, (w) => writeImports(w, r));
        else raw();
        break;
      case SectionId.Global:
        if (meter) out.section(s.id, (w) => writeGlobals(w, r));
        else raw();
        break;
      case SectionId.Memory:
        out.section(s.id, (w) => writeMemory(w, info, options.maxMemoryPages));
        break;
      case SectionId.Export:
        if (meter) out.section(s.id, (w) => writeExports(w));
        else raw();
        break;
      case SectionId.Function:
        if (!meter) raw();
        else
          out.section(s.id, (w) => {
            w.u32(info.functionTypes.length + 2);
            for (const t of info.functionTypes) w.u32(t);
            w.u32(chargeType);
            w.u32(voidType);
          });
        break;
      case SectionId.Start:
        if (!meter) raw(); // metered: exported as START_EXPORT_NAME instead
        break;
      case SectionId.Element:
        if (meter) out.section(s.id, (w) => writeElements(w, r, shift));
        else raw();
        break;
      case SectionId.Code:
        if (meter) out.section(s.id, (w) => writeMeteredCode(w, r, plan, summarizeCode(bytes, { start: s.payloadStart, end: s.end }, tableFuncs, info.importedFuncs)));
        else raw();
        break;
      default:
        raw();
    }
  }
  flushBefore(Infinity);
  return out.finish();
}

function writeMemory(w: WasmWriter, info: ModuleInfo, capPages: number): void {
  const m = info.memory!;
  if (m.shared) throw new WeftError('WEFT_ERR_PLUGIN_LOAD', 'shared memory (threads) is not supported');
  if (m.memory64) throw new WeftError('WEFT_ERR_PLUGIN_LOAD', '64-bit memory is not supported');
  if (m.min > capPages) {
    throw new WeftError('WEFT_ERR_PLUGIN_LOAD', `memory starts at ${m.min} pages (${m.min / 16} MiB), above the plugin's limit of ${capPages} pages; raise limits.memoryMb`);
  }
  const max = Math.min(m.max ?? capPages, capPages);
  w.u32(1);
  w.byte(0x01);
  w.u32(m.min);
  w.u32(max);
}

/** Copies one constant expression, renumbering ref.func. */
function copyExpr(r: WasmReader, w: WasmWriter, shift: (i: number) => number): void {
  let depth = 0;
  let from = r.pos;
  for (;;) {
    const kind = readInstruction(r);
    if (kind === InstrKind.FuncRef) {
      w.bytes(r.bytes.subarray(from, decoded.immStart));
      w.u32(shift(decoded.funcIndex));
      from = decoded.immEnd;
    } else if (kind === InstrKind.BlockOpen || kind === InstrKind.Loop) depth++;
    else if (kind === InstrKind.End && depth-- === 0) break;
  }
  w.bytes(r.bytes.subarray(from, r.pos));
}

function writeElements(w: WasmWriter, r: WasmReader, shift: (i: number) => number): void {
  const n = r.u32();
  w.u32(n);
  for (let i = 0; i < n; i++) {
    const flags = r.u32();
    w.u32(flags);
    if (flags > 7) r.fail(`unknown element segment flags ${flags}`);
    const copy = (fn: () => void): void => {
      const start = r.pos;
      fn();
      w.bytes(r.bytes.subarray(start, r.pos));
    };
    if (flags === 2 || flags === 6) copy(() => r.u32());
    if ((flags & 1) === 0) copyExpr(r, w, shift);
    if (flags === 1 || flags === 2 || flags === 3) copy(() => r.u8());
    if (flags >= 5) copy(() => readValType(r));
    const count = r.u32();
    w.u32(count);
    for (let j = 0; j < count; j++) {
      if ((flags & 4) === 0) w.u32(shift(r.u32()));
      else copyExpr(r, w, shift);
    }
  }
}
