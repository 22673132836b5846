/** proxy_get_property / proxy_set_property: reads resolve through properties.ts; writes land in a per-context overlay. */
import { Status } from '../abi-constants.js';
import { propertyPathAt } from '../header-name-cache.js';
import type { PluginVm } from '../plugin-vm.js';
import { encodeProperty, normalizePropertyPath, resolveProperty } from '../properties.js';


type HostFn = (...args: number[]) => number;

export function propertyImports(vm: PluginVm): Record<string, HostFn> {
  const readPath = (ptr: number, len: number): string => normalizePropertyPath(vm.mem.utf8(ptr, len));
  return {
    proxy_get_property: (pp, pl, rp, rl) => {
      if (!vm.mem.inBounds(pp >>> 0, pl >>> 0)) return Status.InvalidMemoryAccess;
      const path = propertyPathAt(vm.mem, pp >>> 0, pl >>> 0, readPath);
      const value = resolveProperty(vm, path);
      if (value === undefined) return Status.NotFound;
      if (typeof value === 'string') return vm.mem.returnUtf8(value, rp >>> 0, rl >>> 0);
      return vm.mem.returnBytes(encodeProperty(value), rp >>> 0, rl >>> 0);
    },
    proxy_set_property: (pp, pl, vp, vl) => {
      if (!vm.mem.inBounds(pp >>> 0, pl >>> 0) || !vm.mem.inBounds(vp >>> 0, vl >>> 0)) return Status.InvalidMemoryAccess;
      const path = normalizePropertyPath(vm.mem.utf8(pp >>> 0, pl >>> 0));
      const value = vm.mem.copy(vp >>> 0, vl >>> 0);
      const ctx = vm.active;
      if (ctx?.kind === 'stream') (ctx.propertyOverlay ??= new Map()).set(path, value);
      else vm.propertyOverlay.set(path, value);
      return Status.Ok;
    },
  };
}
