/** proxy_http_call and proxy_call_foreign_function: work handed to the host whose results come back to the root context later. */
import { Status } from '../abi-constants.js';
import { readMap } from '../header-map-codec.js';
import { functionNameAt } from '../header-name-cache.js';
import type { HttpCallResponse } from '../host-services.js';
import type { PluginVm } from '../plugin-vm.js';

type HostFn = (...args: number[]) => number;

/** Envoy requires a timeout; a plugin passing 0 still must not hold a VM busy forever. */
const DEFAULT_CALL_TIMEOUT_MS = 30_000;

export function calloutImports(vm: PluginVm): Record<string, HostFn> {
  const m = () => vm.mem;
  const readName = (ptr: number, len: number): string => vm.mem.utf8(ptr, len);
  return {
    proxy_http_call: (up, ul, hp, hl, bp, bl, tp, tl, timeout, ret) => {
      const mem = m();
      for (const [p, l] of [[up, ul], [hp, hl], [bp, bl], [tp, tl]] as const) if (!mem.inBounds(p >>> 0, l >>> 0)) return Status.InvalidMemoryAccess;
      if (!mem.inBounds(ret >>> 0, 4)) return Status.InvalidMemoryAccess;
      const headers = readMap(mem.buf, hp >>> 0, hl >>> 0);
      const trailers = readMap(mem.buf, tp >>> 0, tl >>> 0);
      if (headers === undefined || trailers === undefined) return Status.BadArgument;
      const has = (k: string): boolean => headers.some(([n]) => n === k);
      if (!has(':method') || !has(':path') || !has(':authority')) return Status.BadArgument;
      const send = vm.services.httpCall;
      if (send === undefined) return Status.InternalFailure;
      const cluster = mem.utf8(up >>> 0, ul >>> 0);
      const body = mem.copy(bp >>> 0, bl >>> 0);
      const timeoutMs = (timeout >>> 0) === 0 ? DEFAULT_CALL_TIMEOUT_MS : timeout >>> 0;
      const id = vm.nextCallId();
      mem.setU32(ret >>> 0, id);
      vm.pendingAsync++;
      void runWithTimeout(() => send(cluster, headers, body, trailers, timeoutMs), timeoutMs).then(
        (res) => vm.deliverHttpCallResponse(id, res),
        (err: unknown) => {
          vm.services.logger.debug({ plugin: vm.plugin, cluster, err }, 'plugin http call failed');
          vm.deliverHttpCallResponse(id, undefined);
        },
      );
      return Status.Ok;
    },
    proxy_call_foreign_function: (np, nl, ap, al, rp, rl) => {
      const mem = m();
      if (!mem.inBounds(np >>> 0, nl >>> 0) || !mem.inBounds(ap >>> 0, al >>> 0)) return Status.InvalidMemoryAccess;
      const name = functionNameAt(mem, np >>> 0, nl >>> 0, readName);
      const entry = vm.services.foreignFunctions.lookup(name);
      if (entry === undefined) return Status.NotFound;
      const ctx = vm.active;
      let result: Uint8Array | Promise<Uint8Array>;
      try {
        const contextId = ctx?.id ?? vm.root.id;
        const inPlace = entry.inPlace;
        result = inPlace !== undefined ? inPlace(mem.u8, ap >>> 0, al >>> 0, vm.plugin, contextId) : entry.fn(mem.copy(ap >>> 0, al >>> 0), { pluginName: vm.plugin, contextId });
      } catch (err) {
        vm.services.logger.warn({ plugin: vm.plugin, function: name, err }, 'foreign function threw');
        return Status.InternalFailure;
      }
      if (!(result instanceof Promise)) return vm.mem.returnBytes(result, rp >>> 0, rl >>> 0);
      const st = vm.mem.returnBytes(new Uint8Array(0), rp >>> 0, rl >>> 0);
      if (st !== Status.Ok) return st;
      vm.pendingAsync++;
      void result.then(
        (bytes) => vm.deliverForeignResult(entry.id, bytes),
        (err: unknown) => {
          // An answer must come back, or a stream paused on it would hang; an empty payload is the documented failure signal.
          vm.services.logger.warn({ plugin: vm.plugin, function: name, err }, 'foreign function failed');
          vm.deliverForeignResult(entry.id, new Uint8Array(0));
        },
      );
      return Status.Ok;
    },
  };
}

async function runWithTimeout(start: () => Promise<HttpCallResponse>, ms: number): Promise<HttpCallResponse> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      start(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
        timer.unref();
      }),
    ]);
  } finally {
    if (timer !== undefined) clearTimeout(timer);
  }
}
