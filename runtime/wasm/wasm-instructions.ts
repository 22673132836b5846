/** Decodes one WebAssembly instruction at a time (MVP, bulk memory, reference types, SIMD, threads, tail calls, exceptions) so the instrumenter can walk code without understanding it. */
import type { WasmReader } from './wasm-reader.js';

/** What the instrumenter needs to know about an instruction. */
export const InstrKind = {
  Plain: 0,
  /** block, if, try, try_table: opens a structured block. */
  BlockOpen: 1,
  Loop: 2,
  /** end, delegate: closes a structured block. */
  End: 3,
  /** call, return_call, ref.func: carries a function index immediate (see `Decoded`). */
  FuncRef: 4,
} as const;
export type InstrKindValue = (typeof InstrKind)[keyof typeof InstrKind];

/** Out-parameters of the last `readInstruction`, reused to keep the walk allocation-free. */
export const decoded = { funcIndex: 0, immStart: 0, immEnd: 0 };

function blockType(r: WasmReader): void {
  const b = r.peek();
  if (b === 0x63 || b === 0x64) {
    r.u8();
    r.s33();
  } else if (b >= 0x40 && b <= 0x7f) r.u8();
  else r.s33();
}

function memarg(r: WasmReader): void {
  const align = r.u32();
  if ((align & 0x40) !== 0) r.u32(); // multi-memory: explicit memory index
  r.skipLeb(10);
}

function funcImm(r: WasmReader): InstrKindValue {
  decoded.immStart = r.pos;
  decoded.funcIndex = r.u32();
  decoded.immEnd = r.pos;
  return InstrKind.FuncRef;
}

export function readInstruction(r: WasmReader): InstrKindValue {
  const op = r.u8();
  if (op >= 0x45 && op <= 0xc4) return InstrKind.Plain; // numeric operators: no immediates
  if (op >= 0x28 && op <= 0x3e) {
    memarg(r);
    return InstrKind.Plain;
  }
  switch (op) {
    case 0x00: case 0x01: case 0x05: case 0x0f: case 0x1a: case 0x1b: case 0x19: case 0x0a: case 0xd1: case 0xd3: case 0xd4:
      return InstrKind.Plain;
    case 0x07: // catch: like else, no depth change
      r.u32();
      return InstrKind.Plain;
    case 0x02: case 0x04: case 0x06:
      blockType(r);
      return InstrKind.BlockOpen;
    case 0x1f: {
      blockType(r);
      for (let n = r.u32(); n > 0; n--) {
        const kind = r.u8();
        if (kind === 0x00 || kind === 0x01) r.u32();
        r.u32();
      }
      return InstrKind.BlockOpen;
    }
    case 0x03:
      blockType(r);
      return InstrKind.Loop;
    case 0x0b:
      return InstrKind.End;
    case 0x18:
      r.u32();
      return InstrKind.End;
    case 0x08: case 0x09: case 0x0c: case 0x0d: case 0x14: case 0x15: case 0xd5: case 0xd6:
    case 0x20: case 0x21: case 0x22: case 0x23: case 0x24: case 0x25: case 0x26: case 0x3f: case 0x40:
      r.u32();
      return InstrKind.Plain;
    case 0x0e:
      for (let n = r.u32(); n >= 0; n--) r.u32(); // n targets plus the default
      return InstrKind.Plain;
    case 0x10: case 0x12: case 0xd2:
      return funcImm(r);
    case 0x11: case 0x13:
      r.u32();
      r.u32();
      return InstrKind.Plain;
    case 0x1c:
      for (let n = r.u32(); n > 0; n--) {
        const t = r.u8();
        if (t === 0x63 || t === 0x64) r.s33();
      }
      return InstrKind.Plain;
    case 0x41:
      r.skipLeb(5);
      return InstrKind.Plain;
    case 0x42:
      r.skipLeb(10);
      return InstrKind.Plain;
    case 0x43:
      r.skip(4);
      return InstrKind.Plain;
    case 0x44:
      r.skip(8);
      return InstrKind.Plain;
    case 0xd0:
      r.s33();
      return InstrKind.Plain;
    case 0xfc:
      prefixFc(r);
      return InstrKind.Plain;
    case 0xfd:
      prefixFd(r);
      return InstrKind.Plain;
    case 0xfe: {
      const sub = r.u32();
      if (sub === 0x03) r.u8();
      else memarg(r);
      return InstrKind.Plain;
    }
    case 0xfb:
      return r.fail('GC instructions (0xfb prefix) are not supported');
    default:
      return r.fail(`unknown opcode 0x${op.toString(16)}`);
  }
}

function prefixFc(r: WasmReader): void {
  const sub = r.u32();
  if (sub <= 7) return;
  switch (sub) {
    case 8: case 12: case 14:
      r.u32();
      r.u32();
      return;
    case 9: case 11: case 13: case 15: case 16: case 17:
      r.u32();
      return;
    case 10:
      r.u32();
      r.u32();
      return;
    default:
      r.fail(`unknown 0xfc sub-opcode ${sub}`);
  }
}

function prefixFd(r: WasmReader): void {
  const sub = r.u32();
  if (sub <= 11 || sub === 92 || sub === 93) memarg(r);
  else if (sub === 12 || sub === 13) r.skip(16);
  else if (sub >= 21 && sub <= 34) r.u8();
  else if (sub >= 84 && sub <= 91) {
    memarg(r);
    r.u8();
  }
}
