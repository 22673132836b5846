/**
 * Metric hostcalls. The i64 values reach PluginMetrics as their two 32-bit words: through i64-split-shim.ts when the
 * module imports the hostcalls with the ABI's exact signature (no BigInt per call), else from the BigInt (or, for a
 * module that wrongly declares an i32, the number) JavaScript receives.
 */
import { Status } from '../abi-constants.js';
import { splitI64Shim } from '../i64-split-shim.js';
import { i64Words } from '../plugin-metrics.js';
import type { PluginVm } from '../plugin-vm.js';

export function metricImports(vm: PluginVm): Record<string, (...args: never[]) => number> {
  const metrics = vm.services.metrics;
  const increment = (id: number, low: number, high: number): number => metrics.increment(id >>> 0, low, high);
  const record = (id: number, low: number, high: number): number => metrics.record(id >>> 0, low, high);
  const split = vm.compiled.splitI64Metrics === true ? splitI64Shim(increment, record) : undefined;
  return {
    proxy_define_metric: ((type: number, np: number, nl: number, ret: number) => {
      if (!vm.mem.inBounds(np >>> 0, nl >>> 0) || !vm.mem.inBounds(ret >>> 0, 4)) return Status.InvalidMemoryAccess;
      const id = metrics.define(type, vm.mem.utf8(np >>> 0, nl >>> 0));
      if (typeof id !== 'number') return id.status;
      return vm.mem.writeU32(ret >>> 0, id);
    }),
    proxy_increment_metric: split?.increment ?? ((id: number, delta: bigint | number) => increment(id, ...words(delta))),
    proxy_record_metric: split?.record ?? ((id: number, value: bigint | number) => record(id, ...words(value))),
    proxy_get_metric: ((id: number, ret: number) => {
      const v = metrics.get(id >>> 0);
      if (typeof v === 'object') return v.status;
      return typeof v === 'number' && v >= 0 ? vm.mem.writeU64Number(ret >>> 0, v) : vm.mem.writeU64(ret >>> 0, BigInt(v));
    }),
  };
}

function words(v: bigint | number): [low: number, high: number] {
  return i64Words(typeof v === 'bigint' ? v : BigInt(Math.trunc(v)));
}
