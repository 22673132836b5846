// Plugin metrics without BigInt on the request path: values exact past 2^53 and at the 64-bit wrap, the i64 split
// through the Wasm shim and the JavaScript fallback agreeing, and prom-client filled at scrape time.
import { afterEach, describe, expect, it } from 'vitest';
import { PRELUDE, wat } from '../../test/helpers/wasm-fixtures.js';
import { prng } from '../../test/helpers/prng.js';
import { createTestHost, loadPlugin, type TestHost } from '../../test/helpers/wasm-host.js';
import { MetricsRegistry } from '../telemetry/metrics-registry.js';
import { MetricType, Status } from './abi-constants.js';
import { splitI64Shim } from './i64-split-shim.js';
import { PluginMetrics, i64FromWords, i64Words } from './plugin-metrics.js';

const U64_MAX = 2n ** 64n - 1n;
const I64_MIN = -(2n ** 63n);
const I64_MAX = 2n ** 63n - 1n;

/** An i64 as PluginMetrics takes it. */
const w = (v: bigint): [number, number] => i64Words(v);

let t: TestHost | undefined;
afterEach(() => t?.host.close());

describe('i64 words', () => {
  it('round-trips edge and random i64 values through words, the Wasm shim and back', () => {
    const rand = prng(15);
    const values = [0n, 1n, -1n, 2n ** 32n - 1n, 2n ** 32n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 53n + 1n, -(2n ** 53n) - 1n, I64_MIN, I64_MAX];
    for (let i = 0; i < 200; i++) values.push(BigInt.asIntN(64, (BigInt(Math.floor(rand() * 2 ** 32)) << 32n) | BigInt(Math.floor(rand() * 2 ** 32))));
    const seen: [number, number][] = [];
    const shim = splitI64Shim(
      (_id, low, high) => seen.push([low, high]),
      () => 0,
    );
    for (const v of values) {
      const fromWords = i64FromWords(...w(v));
      expect(BigInt(fromWords)).toBe(v);
      // A number only where it is exact.
      expect(typeof fromWords === 'number' ? Number.isSafeInteger(fromWords) : true).toBe(true);
      seen.length = 0;
      shim.increment(1, v);
      expect(seen).toEqual([w(v)]);
    }
  });
});

describe('PluginMetrics', () => {
  it('keeps counters exact past 2^53 and wraps them at 2^64, refusing negative increments', () => {
    const m = new PluginMetrics(new MetricsRegistry());
    const id = m.define(MetricType.Counter, 'c') as number;
    expect(m.increment(id, ...w(2n ** 53n - 1n))).toBe(Status.Ok);
    expect(m.get(id)).toBe(2 ** 53 - 1);
    expect(m.increment(id, ...w(1n))).toBe(Status.Ok);
    expect(m.increment(id, ...w(1n))).toBe(Status.Ok);
    expect(m.get(id)).toBe(2n ** 53n + 1n);
    expect(m.increment(id, ...w(-1n))).toBe(Status.BadArgument);
    expect(m.get(id)).toBe(2n ** 53n + 1n);
    // Wrapped at 2^64: 2^53 + 1 + 2 (2^63 - 1) = 2^64 + 2^53 - 1.
    expect(m.increment(id, ...w(I64_MAX))).toBe(Status.Ok);
    expect(m.get(id)).toBe(2n ** 53n + 1n + I64_MAX);
    expect(m.increment(id, ...w(I64_MAX))).toBe(Status.Ok);
    expect(m.get(id)).toBe(2 ** 53 - 1);
    expect(m.increment(id, ...w(U64_MAX))).toBe(Status.BadArgument); // an i64 below zero
    expect(m.increment(id, ...w(1n))).toBe(Status.Ok);
    expect(m.get(id)).toBe(2n ** 53n);
    expect(m.record(id, ...w(5n))).toBe(Status.Ok); // record on a counter adds
    expect(m.get(id)).toBe(2n ** 53n + 5n);
  });

  it('keeps gauges as exact i64 values, negative ones included, and wraps at the i64 range', () => {
    const m = new PluginMetrics(new MetricsRegistry());
    const id = m.define(MetricType.Gauge, 'g') as number;
    expect(m.record(id, ...w(-7n))).toBe(Status.Ok);
    expect(m.increment(id, ...w(-2n))).toBe(Status.Ok);
    expect(m.get(id)).toBe(-9);
    expect(m.record(id, ...w(I64_MAX))).toBe(Status.Ok);
    expect(m.get(id)).toBe(I64_MAX);
    expect(m.increment(id, ...w(1n))).toBe(Status.Ok);
    expect(m.get(id)).toBe(I64_MIN);
    expect(m.increment(id, ...w(-I64_MIN - 3n))).toBe(Status.Ok);
    expect(m.get(id)).toBe(-3);
  });

  it('renders counters and gauges at scrape time, summed over the hosts of one registry, and leaves a host metric of the same name its own', async () => {
    const registry = new MetricsRegistry();
    const host = registry.counter('weft_host_total', 'a host counter');
    host.inc(2);
    const a = new PluginMetrics(registry);
    const b = new PluginMetrics(registry);
    const ca = a.define(MetricType.Counter, 'requests.total') as number;
    const cb = b.define(MetricType.Counter, 'requests.total') as number;
    const g = a.define(MetricType.Gauge, 'depth') as number;
    const h = a.define(MetricType.Histogram, 'latency') as number;
    const shared = a.define(MetricType.Counter, 'weft_host_total') as number;
    a.increment(ca, ...w(3n));
    b.increment(cb, ...w(4n));
    a.record(g, ...w(-5n));
    a.record(h, ...w(12n));
    a.increment(shared, ...w(1n));
    expect(a.increment(h, ...w(1n))).toBe(Status.BadArgument);
    expect(a.get(h)).toEqual({ status: Status.BadArgument });
    const text = await registry.render();
    expect(text).toContain('requests_total 7');
    expect(text).toContain('depth -5');
    expect(text).toContain('latency_count 1');
    expect(text).toContain('weft_host_total 3');
    a.increment(ca, ...w(1n));
    expect(await registry.render()).toContain('requests_total 8');
  });
});

describe('metric hostcalls', () => {
  const module = (result: string): Promise<Uint8Array> =>
    wat(`(module
      (import "env" "proxy_define_metric" (func $define (param i32 i32 i32 i32) (result i32)))
      (import "env" "proxy_increment_metric" (func $inc (param i32 i64) ${result}))
      (import "env" "proxy_get_metric" (func $get (param i32 i32) (result i32)))
      ${PRELUDE}
      (func (export "proxy_abi_version_0_2_1"))
      (data (i32.const 2048) "m")
      (func (export "bump") (param $by i64) (result i32)
        (drop (call $define (i32.const 0) (i32.const 2048) (i32.const 1) (i32.const 2056)))
        ${result === '' ? '(call $inc (i32.load (i32.const 2056)) (local.get $by))' : '(drop (call $inc (i32.load (i32.const 2056)) (local.get $by)))'}
        (drop (call $get (i32.load (i32.const 2056)) (i32.const 2064)))
        (i32.const 0)))`);

  it.each([
    ['(result i32), through the Wasm shim', '(result i32)', true],
    ['no result, from JavaScript', '', false],
  ])('count exactly past 2^53 for a module importing the increment with %s', async (_label, result, split) => {
    t = createTestHost();
    const vm = await loadPlugin(t, 'metrics', await module(result));
    expect(vm.compiled.splitI64Metrics).toBe(split);
    const bump = (by: bigint): bigint => {
      vm.callExport(vm.root, 'bump', [by]);
      vm.mem.refresh();
      return vm.mem.view.getBigUint64(2064, true);
    };
    expect(bump(2n ** 53n)).toBe(2n ** 53n);
    expect(bump(3n)).toBe(2n ** 53n + 3n);
    expect(bump(1n)).toBe(2n ** 53n + 4n);
  });
});
