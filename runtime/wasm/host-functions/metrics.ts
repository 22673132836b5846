/** Metric hostcalls; the i64 arguments arrive from the guest as BigInt. */
import { Status } from '../abi-constants.js';
import type { PluginVm } from '../plugin-vm.js';

export function metricImports(vm: PluginVm): Record<string, (...args: never[]) => number> {
  const metrics = vm.services.metrics;
  return {
    proxy_define_metric: ((type: number, np: number, nl: number, ret: number) => {
      if (!vm.mem.inBounds(np >>> 0, nl >>> 0) || !vm.mem.inBounds(ret >>> 0, 4)) return Status.InvalidMemoryAccess;
      const id = metrics.define(type, vm.mem.utf8(np >>> 0, nl >>> 0));
      if (typeof id !== 'number') return id.status;
      return vm.mem.writeU32(ret >>> 0, id);
    }),
    proxy_increment_metric: ((id: number, delta: bigint) => metrics.increment(id >>> 0, toBigInt(delta))),
    proxy_record_metric: ((id: number, value: bigint) => metrics.record(id >>> 0, toBigInt(value))),
    proxy_get_metric: ((id: number, ret: number) => {
      const v = metrics.get(id >>> 0);
      if (typeof v !== 'bigint') return v.status;
      return vm.mem.writeU64(ret >>> 0, v);
    }),
  };
}

/** A module that (wrongly) declares the value as i32 still works: JS hands it over as a number. */
function toBigInt(v: bigint | number): bigint {
  return typeof v === 'bigint' ? v : BigInt(Math.trunc(v));
}
