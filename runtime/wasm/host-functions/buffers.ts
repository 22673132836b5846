/** Buffer hostcalls: request/response bodies of the active stream, callout and gRPC payloads, VM and plugin configuration, foreign-function results. */
import { BufferType, Status } from '../abi-constants.js';
import type { PluginVm } from '../plugin-vm.js';

type HostFn = (...args: number[]) => number;

export function bufferOf(vm: PluginVm, type: number): Uint8Array | undefined {
  const ctx = vm.active;
  switch (type) {
    case BufferType.HttpRequestBody:
      return ctx?.kind === 'stream' ? ctx.requestBody : undefined;
    case BufferType.HttpResponseBody:
      return ctx?.kind === 'stream' ? ctx.responseBody : undefined;
    case BufferType.HttpCallResponseBody:
      return vm.callResponse?.body;
    case BufferType.GrpcReceiveBuffer:
      return vm.grpcReceive?.message;
    case BufferType.VmConfiguration:
      return vm.settings.vmConfiguration;
    case BufferType.PluginConfiguration:
      return vm.settings.pluginConfiguration;
    case BufferType.ForeignFunctionArguments:
      return vm.foreignResult;
    default:
      return undefined;
  }
}

export function bufferImports(vm: PluginVm): Record<string, HostFn> {
  return {
    proxy_get_buffer_bytes: (type, start, max, rp, rl) => {
      const buf = bufferOf(vm, type);
      if (buf === undefined) return type < 0 || type > BufferType.ForeignFunctionArguments ? Status.BadArgument : Status.NotFound;
      // Unsigned: the Rust SDK asks for (0, u32::MAX) meaning "everything".
      const from = Math.min(start >>> 0, buf.length);
      const to = Math.min(buf.length, from + (max >>> 0));
      return vm.mem.returnBytes(buf.subarray(from, to), rp >>> 0, rl >>> 0);
    },
    proxy_get_buffer_status: (type, rsize, rflags) => {
      const buf = bufferOf(vm, type);
      if (buf === undefined) return Status.NotFound;
      if (!vm.mem.inBounds(rsize >>> 0, 4) || !vm.mem.inBounds(rflags >>> 0, 4)) return Status.InvalidMemoryAccess;
      vm.mem.setU32(rsize >>> 0, buf.length);
      vm.mem.setU32(rflags >>> 0, 0);
      return Status.Ok;
    },
    proxy_set_buffer_bytes: (type, start, size, dp, dl) => {
      const ctx = vm.active;
      if (type !== BufferType.HttpRequestBody && type !== BufferType.HttpResponseBody) return bufferOf(vm, type) === undefined ? Status.NotFound : Status.BadArgument;
      if (ctx?.kind !== 'stream') return Status.NotFound;
      const current = type === BufferType.HttpRequestBody ? ctx.requestBody : ctx.responseBody;
      if (current === undefined) return Status.NotFound;
      if (!vm.mem.inBounds(dp >>> 0, dl >>> 0)) return Status.InvalidMemoryAccess;
      // Envoy's cases (prepend at (0,0), append at start >= length, replace all at (0, >= length)) are special cases of a splice.
      const from = Math.min(start >>> 0, current.length);
      const to = Math.min(current.length, from + (size >>> 0));
      const data = vm.mem.u8.subarray(dp >>> 0, (dp >>> 0) + (dl >>> 0));
      const next = new Uint8Array(current.length - (to - from) + data.length);
      next.set(current.subarray(0, from), 0);
      next.set(data, from);
      next.set(current.subarray(to), from + data.length);
      if (type === BufferType.HttpRequestBody) ctx.requestBody = next;
      else ctx.responseBody = next;
      return Status.Ok;
    },
    /** ABI 0.1.0: the VM configuration in on_vm_start, the plugin configuration in on_configure. */
    proxy_get_configuration: (rp, rl) => vm.mem.returnBytes(vm.legacyConfiguration, rp >>> 0, rl >>> 0),
  };
}
