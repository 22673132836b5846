/** Shared data (with CAS) and shared queue hostcalls; both are scoped by the calling VM's vm_id. */
import { Status } from '../abi-constants.js';
import type { PluginVm } from '../plugin-vm.js';

type HostFn = (...args: number[]) => number;

export function sharedStateImports(vm: PluginVm): Record<string, HostFn> {
  const { shared, queues } = vm.services;
  const vmId = vm.settings.vmId;
  const str = (p: number, l: number): string | undefined => (vm.mem.inBounds(p >>> 0, l >>> 0) ? vm.mem.utf8(p >>> 0, l >>> 0) : undefined);
  return {
    proxy_get_shared_data: (kp, kl, rp, rl, rcas) => {
      const key = str(kp, kl);
      if (key === undefined || !vm.mem.inBounds(rcas >>> 0, 4)) return Status.InvalidMemoryAccess;
      const entry = shared.get(vmId, key);
      if (entry === undefined) return Status.NotFound;
      const st = vm.mem.returnBytes(entry.value, rp >>> 0, rl >>> 0);
      if (st !== Status.Ok) return st;
      return vm.mem.writeU32(rcas >>> 0, entry.cas);
    },
    proxy_set_shared_data: (kp, kl, vp, vl, cas) => {
      const key = str(kp, kl);
      if (key === undefined || !vm.mem.inBounds(vp >>> 0, vl >>> 0)) return Status.InvalidMemoryAccess;
      return shared.set(vmId, key, vm.mem.copy(vp >>> 0, vl >>> 0), cas >>> 0);
    },
    proxy_register_shared_queue: (np, nl, ret) => {
      const name = str(np, nl);
      if (name === undefined || !vm.mem.inBounds(ret >>> 0, 4)) return Status.InvalidMemoryAccess;
      const token = queues.register(vmId, name, { notify: (t) => vm.queueReady(t) });
      return vm.mem.writeU32(ret >>> 0, token);
    },
    proxy_resolve_shared_queue: (vp, vl, np, nl, ret) => {
      const target = str(vp, vl);
      const name = str(np, nl);
      if (target === undefined || name === undefined || !vm.mem.inBounds(ret >>> 0, 4)) return Status.InvalidMemoryAccess;
      const token = queues.resolve(target === '' ? vmId : target, name);
      if (token === undefined) return Status.NotFound;
      return vm.mem.writeU32(ret >>> 0, token);
    },
    proxy_enqueue_shared_queue: (token, vp, vl) => {
      if (!vm.mem.inBounds(vp >>> 0, vl >>> 0)) return Status.InvalidMemoryAccess;
      return queues.enqueue(token >>> 0, vm.mem.copy(vp >>> 0, vl >>> 0));
    },
    proxy_dequeue_shared_queue: (token, rp, rl) => {
      const item = queues.dequeue(token >>> 0);
      if (typeof item === 'number') return item;
      return vm.mem.returnBytes(item, rp >>> 0, rl >>> 0);
    },
  };
}
