import wabtInit from 'wabt';
import { describe, expect, it } from 'vitest';
import { FUEL_IMPORT_MODULE, FUEL_IMPORT_NAME, GROW_IMPORT_NAME, START_EXPORT_NAME, instrumentModule } from './fuel-instrumenter.js';
import { parseModuleInfo } from './wasm-module-info.js';

const wabt = await wabtInit();
function assemble(text: string): Uint8Array {
  const m = wabt.parseWat('t.wat', text, { exceptions: true, simd: true, bulk_memory: true, reference_types: true, tail_call: true });
  try {
    return new Uint8Array(m.toBinary({}).buffer);
  } finally {
    m.destroy();
  }
}

/** Exercises the constructs whose encoding the rewriter must preserve or renumber. */
const KITCHEN_SINK = `(module
  (import "env" "log" (func $log (param i32)))
  (import "env" "g" (global $imported i32))
  (type $binop (func (param i32 i32) (result i32)))
  (memory (export "memory") 1 4)
  (table 3 funcref)
  (global $counter (mut i32) (i32.const 0))
  (global $fref funcref (ref.func $add))
  (elem (i32.const 0) $add $sub)
  (elem declare func $mul)
  (data (i32.const 16) "hi")
  (func $add (type $binop) (i32.add (local.get 0) (local.get 1)))
  (func $sub (type $binop) (i32.sub (local.get 0) (local.get 1)))
  (func $mul (type $binop) (i32.mul (local.get 0) (local.get 1)))
  (func $start (global.set $counter (i32.add (i32.const 100) (memory.grow (i32.const 0)))))
  (start $start)
  (func (export "sum_to") (param $n i32) (result i32) (local $acc i32)
    (block $out (loop $top
      (br_if $out (i32.eqz (local.get $n)))
      (local.set $acc (call_indirect (type $binop) (local.get $acc) (local.get $n) (i32.const 0)))
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br $top)))
    (local.get $acc))
  (func (export "pick") (param $i i32) (result i32)
    (block $c (block $b (block $a (br_table $a $b $c (local.get $i))) (return (i32.const 10))) (return (i32.const 20)))
    (i32.const 30))
  (func $fact (export "fact") (param $n i32) (param $acc i32) (result i32)
    (if (result i32) (i32.le_s (local.get $n) (i32.const 1))
      (then (local.get $acc))
      (else (return_call $fact (i32.sub (local.get $n) (i32.const 1)) (i32.mul (local.get $acc) (local.get $n))))))
  (func (export "misc") (result i32)
    (call $log (global.get $imported))
    (drop (i8x16.extract_lane_u 3 (v128.const i32x4 1 2 3 4)))
    (memory.fill (i32.const 100) (i32.const 7) (i32.const 4))
    (i32.add (global.get $counter) (i32.add (i32.load8_u (i32.const 103)) (memory.grow (i32.const 1)))))
  (func (export "via_ref") (result i32) (call_indirect (type $binop) (i32.const 6) (i32.const 7) (i32.const 1)))
  (func (export "spin_in_try") (loop $l (try (do (loop $inner (br $inner))) (catch_all)) (br $l)))
)`;

function run(bytes: Uint8Array, refill: () => number): Record<string, (...a: number[]) => number> {
  const logged: number[] = [];
  const holder: { memory?: WebAssembly.Memory } = {};
  const instance = new WebAssembly.Instance(new WebAssembly.Module(bytes), {
    env: { log: (x: number) => logged.push(x), g: 5 },
    [FUEL_IMPORT_MODULE]: { [FUEL_IMPORT_NAME]: refill, [GROW_IMPORT_NAME]: (p: number) => (holder.memory === undefined ? -1 : holder.memory.grow(p)) },
  });
  holder.memory = instance.exports.memory as WebAssembly.Memory;
  const start = instance.exports[START_EXPORT_NAME];
  if (typeof start === 'function') (start as () => void)(); // the start section, run once the host has the memory
  return instance.exports as unknown as Record<string, (...a: number[]) => number>;
}

describe('fuel instrumentation', () => {
  const original = assemble(KITCHEN_SINK);
  const info = parseModuleInfo(original);

  it('preserves behaviour: indirect calls, br_table, tail calls, start, element and global ref.func, SIMD, bulk memory', () => {
    const plain = run(original, () => 0);
    const metered = run(instrumentModule(original, info, { maxMemoryPages: 4 }), () => 1000);
    for (const [name, args] of [['sum_to', [100]], ['pick', [0]], ['pick', [1]], ['pick', [7]], ['fact', [10, 1]], ['misc', []], ['via_ref', []]] as const) {
      expect(metered[name]!(...args), `${name}(${args.join(',')})`).toBe(plain[name]!(...args));
    }
  });

  it('charges fuel in loops and calls, and a negative refill traps even through the guest’s catch_all', () => {
    let refills = 0;
    const e = run(instrumentModule(original, info, { maxMemoryPages: 4 }), () => (++refills > 50 ? -1 : 1000));
    e.sum_to!(100);
    expect(refills).toBeGreaterThan(0);
    expect(() => e.spin_in_try!()).toThrow(WebAssembly.RuntimeError);
    expect(refills).toBeGreaterThan(50);
  });

  it('caps the memory maximum and refuses a floor above the cap', () => {
    const capped = instrumentModule(original, info, { maxMemoryPages: 2 });
    expect(parseModuleInfo(capped).memory).toMatchObject({ min: 1, max: 2 });
    expect(() => instrumentModule(original, info, { maxMemoryPages: 0 })).toThrow(/above the plugin's limit/);
    const unmetered = instrumentModule(original, info, { maxMemoryPages: 3, meterFuel: false });
    expect(parseModuleInfo(unmetered).imports).toHaveLength(2);
  });
});
