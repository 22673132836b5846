/**
 * A tiny Wasm module that stands between a guest and the metric hostcalls taking an i64: the guest calls its exports
 * with (i32 id, i64 value), they call the host's JavaScript with (id, low word, high word), all i32.
 *
 * Why: V8 hands an i64 argument to JavaScript as a new BigInt, a heap object per call (and BigInt arithmetic after it).
 * A Wasm-to-Wasm call passes the i64 in a register, and the split words arrive in JavaScript as small integers, so the
 * metric hostcalls of a plugin that counts every request allocate nothing.
 */

/** The JavaScript side: `low` is the value's low 32 bits as a signed i32, `high` its high 32 bits (signed). */
export type SplitI64Call = (id: number, low: number, high: number) => number;

export interface SplitI64Exports {
  increment: (id: number, value: bigint) => number;
  record: (id: number, value: bigint) => number;
}

/**
 * (module
 *   (type (func (param i32 i32 i32) (result i32)))
 *   (type (func (param i32 i64) (result i32)))
 *   (import "js" "increment" (func (type 0)))
 *   (import "js" "record" (func (type 0)))
 *   (func (export "increment") (type 1)
 *     (call 0 (local.get 0) (i32.wrap_i64 (local.get 1)) (i32.wrap_i64 (i64.shr_s (local.get 1) (i64.const 32)))))
 *   (func (export "record") (type 1)
 *     (call 1 (local.get 0) (i32.wrap_i64 (local.get 1)) (i32.wrap_i64 (i64.shr_s (local.get 1) (i64.const 32))))))
 */
function body(callee: number): number[] {
  // local.get 0, local.get 1, i32.wrap_i64, local.get 1, i64.const 32, i64.shr_s, i32.wrap_i64, call callee, end
  const code = [0x00, 0x20, 0x00, 0x20, 0x01, 0xa7, 0x20, 0x01, 0x42, 0x20, 0x87, 0xa7, 0x10, callee, 0x0b];
  return [code.length, ...code];
}

/** A section of fewer than 128 bytes (its size fits one LEB128 byte). */
function section(id: number, content: number[]): number[] {
  return [id, content.length, ...content];
}

function name(text: string): number[] {
  return [text.length, ...Buffer.from(text, 'latin1')];
}

const SHIM_BYTES = Uint8Array.from([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
  ...section(0x01, [0x02, 0x60, 0x03, 0x7f, 0x7f, 0x7f, 0x01, 0x7f, 0x60, 0x02, 0x7f, 0x7e, 0x01, 0x7f]),
  ...section(0x02, [0x02, ...name('js'), ...name('increment'), 0x00, 0x00, ...name('js'), ...name('record'), 0x00, 0x00]),
  ...section(0x03, [0x02, 0x01, 0x01]),
  ...section(0x07, [0x02, ...name('increment'), 0x00, 0x02, ...name('record'), 0x00, 0x03]),
  ...section(0x0a, [0x02, ...body(0), ...body(1)]),
]);

let compiled: WebAssembly.Module | undefined;

/** The shim's exports for one VM, calling `increment` and `record` with the split value. */
export function splitI64Shim(increment: SplitI64Call, record: SplitI64Call): SplitI64Exports {
  compiled ??= new WebAssembly.Module(SHIM_BYTES);
  return new WebAssembly.Instance(compiled, { js: { increment, record } }).exports as unknown as SplitI64Exports;
}
