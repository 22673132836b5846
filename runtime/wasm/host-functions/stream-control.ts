/** Hostcalls that steer a stream or a context: continue/close, local responses, proxy_done, effective context, time and ticks. */
import { GRPC_STATUS_NONE, Status, StreamType } from '../abi-constants.js';
import { epochNanos } from '../epoch-nanos.js';
import { readMap } from '../header-map-codec.js';
import type { PluginVm } from '../plugin-vm.js';

type HostFn = (...args: number[]) => number;

export function streamControlImports(vm: PluginVm): Record<string, HostFn> {
  const stream = () => {
    const ctx = vm.active;
    return ctx?.kind === 'stream' ? ctx : undefined;
  };
  return {
    proxy_continue_stream: (type) => {
      const s = stream();
      if (s === undefined) return Status.NotFound;
      if (type === StreamType.HttpRequest || type === StreamType.HttpResponse) return s.continueStream(type);
      return type === StreamType.Downstream || type === StreamType.Upstream ? Status.Unimplemented : Status.BadArgument;
    },
    proxy_close_stream: (type) => {
      const s = stream();
      if (s === undefined) return Status.NotFound;
      if (type < 0 || type > StreamType.Upstream) return Status.BadArgument;
      s.closeStream();
      return Status.Ok;
    },
    proxy_continue_request: () => stream()?.continueStream(StreamType.HttpRequest) ?? Status.NotFound,
    proxy_continue_response: () => stream()?.continueStream(StreamType.HttpResponse) ?? Status.NotFound,
    proxy_clear_route_cache: () => Status.Ok,
    proxy_send_local_response: (status, dp, dl, bp, bl, hp, hl, grpc) => {
      const s = stream();
      if (s === undefined) return Status.NotFound;
      const m = vm.mem;
      if (!m.inBounds(dp >>> 0, dl >>> 0) || !m.inBounds(bp >>> 0, bl >>> 0) || !m.inBounds(hp >>> 0, hl >>> 0)) return Status.InvalidMemoryAccess;
      const headers = readMap(m.buf, hp >>> 0, hl >>> 0);
      if (headers === undefined) return Status.BadArgument;
      const code = status >>> 0;
      if (code < 100 || code > 999) return Status.BadArgument;
      const g = grpc >>> 0;
      s.sendLocalResponse({
        status: code,
        headers,
        body: m.copy(bp >>> 0, bl >>> 0),
        details: m.utf8(dp >>> 0, dl >>> 0),
        grpcStatus: g === GRPC_STATUS_NONE ? undefined : g,
        plugin: vm.plugin,
      });
      return Status.Ok;
    },
    proxy_done: () => stream()?.proxyDone() ?? Status.NotFound,
    proxy_set_effective_context: (id) => {
      const ctx = vm.contexts.get(id >>> 0);
      if (ctx === undefined) return Status.BadArgument;
      vm.effective = ctx;
      return Status.Ok;
    },
    proxy_get_current_time_nanoseconds: (ret) => vm.mem.writeU64Number(ret >>> 0, epochNanos()),
    proxy_set_tick_period_milliseconds: (ms) => {
      vm.setTickPeriod(ms >>> 0);
      return Status.Ok;
    },
    proxy_get_status: (rc, mp, ml) => {
      let code: number;
      let message = '';
      if (vm.callResponse !== undefined) code = vm.callResponse.status;
      else if (vm.grpcReceive?.status !== undefined) {
        code = vm.grpcReceive.status;
        message = vm.grpcReceive.statusMessage ?? '';
      } else return Status.NotFound;
      if (vm.mem.writeU32(rc >>> 0, code) !== Status.Ok) return Status.InvalidMemoryAccess;
      return vm.mem.returnUtf8(message, mp >>> 0, ml >>> 0);
    },
  };
}
