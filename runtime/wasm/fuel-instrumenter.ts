/**
 * Rewrites a module at load so it can be stopped: a fuel counter (a new mutable i32 global) is charged at every function
 * entry and loop header with the instruction count of that straight-line region, and when it goes negative the module
 * calls the imported `__weft.refill_fuel`, which either refills it or throws once the callback's CPU budget is spent.
 * The memory's maximum is capped at the plugin's limit in the same pass, and `memory.grow` becomes a call to the
 * imported `__weft.memory_grow`, so the host knows when a trap follows a refused growth (memory exhaustion).
 */
import { WeftError } from '../errors.js';
import { InstrKind, decoded, readInstruction } from './wasm-instructions.js';
import { type ModuleInfo, SectionId, readValType } from './wasm-module-info.js';
import { WasmReader } from './wasm-reader.js';
import { WasmWriter } from './wasm-writer.js';

export const FUEL_IMPORT_MODULE = '__weft';
export const FUEL_IMPORT_NAME = 'refill_fuel';
export const GROW_IMPORT_NAME = 'memory_grow';

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
  const refillFunc = info.importedFuncs;
  const growFunc = refillFunc + 1;
  const fuelGlobal = info.importedGlobals + info.definedGlobals;
  const shift = (idx: number): number => (meter && idx >= refillFunc ? idx + 2 : idx);

  const out = new WasmWriter(bytes.length + bytes.length / 4 + 64);
  out.bytes(bytes.subarray(0, 8));
  const present = new Set(info.sections.map((s) => s.id));
  const pending: { rank: number; emit: () => void }[] = [];
  if (meter) {
    if (!present.has(SectionId.Type)) pending.push({ rank: RANK[SectionId.Type]!, emit: () => out.section(SectionId.Type, (w) => writeTypes(w, undefined)) });
    if (!present.has(SectionId.Import)) pending.push({ rank: RANK[SectionId.Import]!, emit: () => out.section(SectionId.Import, (w) => writeImports(w, undefined)) });
    if (!present.has(SectionId.Global)) pending.push({ rank: RANK[SectionId.Global]!, emit: () => out.section(SectionId.Global, (w) => writeGlobals(w, undefined)) });
  }
  const flushBefore = (rank: number): void => {
    while (pending.length > 0 && pending[0]!.rank < rank) pending.shift()!.emit();
  };

  function writeTypes(w: WasmWriter, r: WasmReader | undefined): void {
    const n = r === undefined ? 0 : r.u32();
    w.u32(n + 2);
    if (r !== undefined) w.bytes(r.bytes.subarray(r.pos, r.end));
    w.bytes(Uint8Array.of(0x60, 0x00, 0x01, 0x7f)); // () -> i32
    w.bytes(Uint8Array.of(0x60, 0x01, 0x7f, 0x01, 0x7f)); // (i32) -> i32
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
        if (!meter) raw();
        else
          out.section(s.id, (w) => {
            w.u32(info.exports.length);
            for (const e of info.exports) {
              w.name(e.name);
              const kind = ['func', 'table', 'memory', 'global', 'tag'].indexOf(e.kind);
              w.byte(kind);
              w.u32(e.kind === 'func' ? shift(e.index) : e.index);
            }
          });
        break;
      case SectionId.Start:
        if (meter) out.section(s.id, (w) => w.u32(shift(r.u32())));
        else raw();
        break;
      case SectionId.Element:
        if (meter) out.section(s.id, (w) => writeElements(w, r, shift));
        else raw();
        break;
      case SectionId.Code:
        if (meter) out.section(s.id, (w) => writeCode(w, r, shift, fuelGlobal, refillFunc, growFunc));
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

const costs: number[] = [];
const stack: number[] = [];
// Edits, in code order: [pos, 0, region] fuel check; [pos, 1, end, funcIndex] renumbered call; [pos, 2, end] memory.grow.
const edits: number[] = [];

function writeCode(w: WasmWriter, r: WasmReader, shift: (i: number) => number, fuelGlobal: number, refillFunc: number, growFunc: number): void {
  const n = r.u32();
  w.u32(n);
  const body = new WasmWriter(4096);
  for (let i = 0; i < n; i++) {
    const size = r.u32();
    const end = r.pos + size;
    const br = new WasmReader(r.bytes, r.pos, end);
    for (let groups = br.u32(); groups > 0; groups--) {
      br.u32();
      readValType(br);
    }
    const codeStart = br.pos;
    costs.length = 0;
    stack.length = 0;
    edits.length = 0;
    costs.push(0);
    stack.push(0);
    while (!br.done) {
      const opStart = br.pos;
      const kind = readInstruction(br);
      costs[stack[stack.length - 1]!]!++;
      if (kind === InstrKind.Loop) {
        const region = costs.length;
        costs.push(0);
        stack.push(region);
        edits.push(br.pos, 0, region);
      } else if (kind === InstrKind.BlockOpen) stack.push(stack[stack.length - 1]!);
      else if (kind === InstrKind.End) stack.pop();
      else if (kind === InstrKind.FuncRef) edits.push(decoded.immStart, 1, decoded.immEnd, decoded.funcIndex);
      else if (r.bytes[opStart] === 0x40) edits.push(opStart, 2, br.pos);
    }
    if (stack.length !== 0) br.fail(`function ${i}: unbalanced blocks`);
    body.length = 0;
    body.bytes(r.bytes.subarray(r.pos, codeStart));
    fuelCheck(body, costs[0]!, fuelGlobal, refillFunc);
    let from = codeStart;
    for (let e = 0; e < edits.length; ) {
      const pos = edits[e]!;
      body.bytes(r.bytes.subarray(from, pos));
      if (edits[e + 1] === 0) {
        fuelCheck(body, costs[edits[e + 2]!]!, fuelGlobal, refillFunc);
        from = pos;
        e += 3;
      } else if (edits[e + 1] === 2) {
        body.byte(0x10);
        body.u32(growFunc);
        from = edits[e + 2]!;
        e += 3;
      } else {
        body.u32(shift(edits[e + 3]!));
        from = edits[e + 2]!;
        e += 4;
      }
    }
    body.bytes(r.bytes.subarray(from, end));
    w.u32(body.length);
    w.bytes(body.finish());
    r.pos = end;
  }
}

/** fuel -= cost; if (fuel < 0) fuel = refill_fuel(); */
function fuelCheck(w: WasmWriter, cost: number, global: number, refill: number): void {
  w.byte(0x23);
  w.u32(global);
  w.byte(0x41);
  w.s32(cost);
  w.byte(0x6b);
  w.byte(0x24);
  w.u32(global);
  w.byte(0x23);
  w.u32(global);
  w.byte(0x41);
  w.byte(0x00);
  w.byte(0x48);
  w.byte(0x04);
  w.byte(0x40);
  w.byte(0x10);
  w.u32(refill);
  w.byte(0x24);
  w.u32(global);
  w.byte(0x0b);
}
