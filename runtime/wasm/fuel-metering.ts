/**
 * The code-section half of fuel instrumentation. Cycles are what can run unbounded, so checks sit where every cycle
 * passes: loop headers and the entries of functions that make calls. Loop checks count down a per-activation local
 * (a register in optimized code) and draw from the shared fuel global only every LOCAL_GRANT units; functions without
 * calls ("leaves") get no entry check, their straight-line cost is charged at each direct call site instead. The slow
 * paths live in two appended helper functions: an import call inside a hot function makes V8 compile its loops worse.
 * When the budget is spent the refill import answers a negative value and the helper executes `unreachable`: a trap,
 * unlike a thrown exception, cannot be caught by the guest's own catch_all.
 */
import { InstrKind, decoded, readInstruction } from './wasm-instructions.js';
import { readValType } from './wasm-module-info.js';
import { WasmReader } from './wasm-reader.js';
import { WasmWriter } from './wasm-writer.js';

/** Fuel charged to the global per loop-counter refill (then converted to iterations per function). */
const LOCAL_GRANT = 2000;
const CALL_OPS = new Set([0x10, 0x11, 0x12, 0x13, 0x14, 0x15]);

/** The opcodes the emitters below write (WebAssembly core spec, binary format). */
const OP = {
  unreachable: 0x00,
  if: 0x04,
  end: 0x0b,
  call: 0x10,
  localGet: 0x20,
  localSet: 0x21,
  localTee: 0x22,
  globalGet: 0x23,
  globalSet: 0x24,
  i32Const: 0x41,
  i32Eqz: 0x45,
  i32LtS: 0x48,
  i32Sub: 0x6b,
  /** The empty block type of `if`. */
  voidBlock: 0x40,
} as const;

export interface MeterPlan {
  fuelGlobal: number;
  refillFunc: number;
  growFunc: number;
  importedFuncs: number;
  /** Parameter count of each defined function (locals are numbered after them). */
  paramCounts: number[];
  shift: (funcIndex: number) => number;
  /** Appended helpers: `(charge) -> ()` charges the global for a loop counter's grant; `() -> ()` refills the global. */
  slowLoopFunc: number;
  slowEntryFunc: number;
}

interface CodeSummary {
  /** Straight-line cost of each defined function that makes no calls, -1 for the others. */
  leafCost: Int32Array;
  /** Charged at indirect calls, whose target is unknown: the largest leaf cost of any function in a table. */
  indirectCost: number;
}

function skipLocals(r: WasmReader): number {
  let total = 0;
  for (let groups = r.u32(); groups > 0; groups--) {
    total += r.u32();
    readValType(r);
  }
  return total;
}

/** First pass: which functions are leaves and what they cost. */
export function summarizeCode(bytes: Uint8Array, code: { start: number; end: number }, tableFuncs: ReadonlySet<number>, importedFuncs: number): CodeSummary {
  const r = new WasmReader(bytes, code.start, code.end);
  const n = r.u32();
  const leafCost = new Int32Array(n);
  const loops: boolean[] = [];
  for (let i = 0; i < n; i++) {
    const size = r.u32();
    const end = r.pos + size;
    const br = new WasmReader(bytes, r.pos, end);
    skipLocals(br);
    let cost = 0;
    let inLoop = 0;
    let calls = false;
    loops.length = 0;
    while (!br.done) {
      const op = bytes[br.pos]!;
      const kind = readInstruction(br);
      if (inLoop === 0) cost++;
      if (CALL_OPS.has(op)) calls = true;
      if (kind === InstrKind.Loop || kind === InstrKind.BlockOpen) {
        loops.push(kind === InstrKind.Loop);
        if (kind === InstrKind.Loop) inLoop++;
      } else if (kind === InstrKind.End && loops.pop() === true) inLoop--;
    }
    leafCost[i] = calls ? -1 : cost;
    r.pos = end;
  }
  let indirectCost = 1;
  for (const f of tableFuncs) {
    const c = f >= importedFuncs ? (leafCost[f - importedFuncs] ?? -1) : -1;
    if (c > indirectCost) indirectCost = c;
  }
  return { leafCost, indirectCost };
}

/** Function indices placed in tables by element segments (the possible targets of call_indirect). */
export function tableFunctions(bytes: Uint8Array, element: { start: number; end: number } | undefined): Set<number> {
  const out = new Set<number>();
  if (element === undefined) return out;
  const r = new WasmReader(bytes, element.start, element.end);
  const expr = (): void => {
    for (let depth = 0; ; ) {
      const kind = readInstruction(r);
      if (kind === InstrKind.FuncRef) out.add(decoded.funcIndex);
      else if (kind === InstrKind.BlockOpen || kind === InstrKind.Loop) depth++;
      else if (kind === InstrKind.End && depth-- === 0) return;
    }
  };
  for (let n = r.u32(); n > 0; n--) {
    const flags = r.u32();
    if (flags === 2 || flags === 6) r.u32();
    if ((flags & 1) === 0) expr();
    if (flags === 1 || flags === 2 || flags === 3) r.u8();
    if (flags >= 5) readValType(r);
    for (let count = r.u32(); count > 0; count--) {
      if ((flags & 4) === 0) out.add(r.u32());
      else expr();
    }
  }
  return out;
}

const costs: number[] = [];
const stack: number[] = [];
// Edits, in code order: [pos, 0, region] loop check; [pos, 1, end, funcIndex] renumbered call; [pos, 2, end] memory.grow.
const edits: number[] = [];

export function writeMeteredCode(w: WasmWriter, r: WasmReader, plan: MeterPlan, summary: CodeSummary): void {
  const n = r.u32();
  w.u32(n + 2);
  const body = new WasmWriter(4096);
  for (let i = 0; i < n; i++) {
    const size = r.u32();
    const end = r.pos + size;
    const br = new WasmReader(r.bytes, r.pos, end);
    const localsStart = br.pos;
    const groups = br.u32();
    const groupsStart = br.pos;
    const declared = skipLocals(new WasmReader(r.bytes, localsStart, end));
    br.pos = localsStart;
    skipLocals(br);
    const codeStart = br.pos;
    costs.length = 0;
    stack.length = 0;
    edits.length = 0;
    costs.push(0);
    stack.push(0);
    let hasLoop = false;
    while (!br.done) {
      const opStart = br.pos;
      const op = r.bytes[opStart]!;
      const kind = readInstruction(br);
      const top = stack[stack.length - 1]!;
      costs[top]!++;
      if (kind === InstrKind.Loop) {
        hasLoop = true;
        const region = costs.length;
        costs.push(0);
        stack.push(region);
        edits.push(br.pos, 0, region);
      } else if (kind === InstrKind.BlockOpen) stack.push(top);
      else if (kind === InstrKind.End) stack.pop();
      else if (kind === InstrKind.FuncRef) {
        edits.push(decoded.immStart, 1, decoded.immEnd, decoded.funcIndex);
        const callee = decoded.funcIndex - plan.importedFuncs;
        if (op !== 0xd2 && callee >= 0) costs[top]! += Math.max(0, summary.leafCost[callee] ?? 0);
      } else if (op === 0x40) edits.push(opStart, 2, br.pos);
      else if (op === 0x11 || op === 0x13 || op === 0x14 || op === 0x15) costs[top]! += summary.indirectCost;
    }
    if (stack.length !== 0) br.fail(`function ${i}: unbalanced blocks`);
    const counter = plan.paramCounts[i]! + declared;
    let maxLoopCost = 1;
    for (let k = 1; k < costs.length; k++) if (costs[k]! > maxLoopCost) maxLoopCost = costs[k]!;
    const iterations = Math.max(1, Math.floor(LOCAL_GRANT / maxLoopCost));
    const grant = { iterations, charge: iterations * maxLoopCost };
    body.length = 0;
    if (hasLoop) {
      body.u32(groups + 1);
      body.bytes(r.bytes.subarray(groupsStart, codeStart));
      body.u32(1);
      body.byte(0x7f); // i32
    } else body.bytes(r.bytes.subarray(localsStart, codeStart));
    if (summary.leafCost[i] === -1) entryCheck(body, costs[0]!, plan);
    if (hasLoop) {
      // counter = 1: the first loop iteration takes the slow path and draws a grant.
      body.byte(OP.i32Const);
      body.byte(0x01);
      body.byte(OP.localSet);
      body.u32(counter);
    }
    let from = codeStart;
    for (let e = 0; e < edits.length; ) {
      const pos = edits[e]!;
      body.bytes(r.bytes.subarray(from, pos));
      if (edits[e + 1] === 0) {
        loopCheck(body, grant, counter, plan);
        from = pos;
        e += 3;
      } else if (edits[e + 1] === 2) {
        body.byte(OP.call);
        body.u32(plan.growFunc);
        from = edits[e + 2]!;
        e += 3;
      } else {
        body.u32(plan.shift(edits[e + 3]!));
        from = edits[e + 2]!;
        e += 4;
      }
    }
    body.bytes(r.bytes.subarray(from, end));
    w.u32(body.length);
    w.bytes(body.finish());
    r.pos = end;
  }
  writeHelpers(w, plan);
}

/** The two slow-path helpers, appended after the module's own functions (so no index moves). */
function writeHelpers(w: WasmWriter, plan: MeterPlan): void {
  // slowLoop(charge): global -= charge; if (global < 0) refillOrTrap;
  const loop = new WasmWriter(64);
  loop.u32(0); // no locals
  loop.byte(OP.globalGet);
  loop.u32(plan.fuelGlobal);
  loop.byte(OP.localGet);
  loop.byte(0x00);
  subtractAndTestFuel(loop, plan);
  loop.byte(OP.if);
  loop.byte(OP.voidBlock);
  refillOrTrap(loop, plan);
  loop.byte(OP.end);
  loop.byte(OP.end);
  w.u32(loop.length);
  w.bytes(loop.finish());
  const entry = new WasmWriter(16);
  entry.u32(0);
  refillOrTrap(entry, plan);
  entry.byte(OP.end);
  w.u32(entry.length);
  w.bytes(entry.finish());
}

/** Stack [fuel, amount] → global = fuel - amount; leaves (global < 0) on the stack. */
function subtractAndTestFuel(w: WasmWriter, plan: MeterPlan): void {
  w.byte(OP.i32Sub);
  w.byte(OP.globalSet);
  w.u32(plan.fuelGlobal);
  fuelIsNegative(w, plan);
}

/** Leaves (global < 0) on the stack. */
function fuelIsNegative(w: WasmWriter, plan: MeterPlan): void {
  w.byte(OP.globalGet);
  w.u32(plan.fuelGlobal);
  w.byte(OP.i32Const);
  w.byte(0x00);
  w.byte(OP.i32LtS);
}

/** global = refill(); if (global < 0) unreachable; */
function refillOrTrap(w: WasmWriter, plan: MeterPlan): void {
  w.byte(OP.call);
  w.u32(plan.refillFunc);
  w.byte(OP.globalSet);
  w.u32(plan.fuelGlobal);
  fuelIsNegative(w, plan);
  w.byte(OP.if);
  w.byte(OP.voidBlock);
  w.byte(OP.unreachable);
  w.byte(OP.end);
}

/** global -= cost; then leaves (global < 0) on the stack. */
function charge(w: WasmWriter, cost: number, plan: MeterPlan): void {
  w.byte(OP.globalGet);
  w.u32(plan.fuelGlobal);
  w.byte(OP.i32Const);
  w.s32(cost);
  subtractAndTestFuel(w, plan);
}

/** global -= cost; if (global < 0) slowEntry(); */
function entryCheck(w: WasmWriter, cost: number, plan: MeterPlan): void {
  charge(w, cost, plan);
  w.byte(OP.if);
  w.byte(OP.voidBlock);
  w.byte(OP.call);
  w.u32(plan.slowEntryFunc);
  w.byte(OP.end);
}

/** if (--counter == 0) { counter = grant.iterations; slowLoop(grant.charge); } — reset first, so a throwing refill caught by the guest still fires again. */
function loopCheck(w: WasmWriter, grant: { iterations: number; charge: number }, counter: number, plan: MeterPlan): void {
  w.byte(OP.localGet);
  w.u32(counter);
  w.byte(OP.i32Const);
  w.byte(0x01);
  w.byte(OP.i32Sub);
  w.byte(OP.localTee);
  w.u32(counter);
  w.byte(OP.i32Eqz);
  w.byte(OP.if);
  w.byte(OP.voidBlock);
  w.byte(OP.i32Const);
  w.s32(grant.iterations);
  w.byte(OP.localSet);
  w.u32(counter);
  w.byte(OP.i32Const);
  w.s32(grant.charge);
  w.byte(OP.call);
  w.u32(plan.slowLoopFunc);
  w.byte(OP.end);
}
