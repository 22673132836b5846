/**
 * Header/trailer/metadata map hostcalls over weft's [name, value] byte-string pairs, mutated in place. A stream map may
 * be lazy (lazy-header-map.ts): lookups, adds, and edits of names it lacks or of its plain fields are served without
 * building its pairs.
 */
import { MapType, Status } from '../abi-constants.js';
import { type HeaderPairs, readMap, serializedSize, writeMap } from '../header-map-codec.js';
import { headerNameAt, headerValueAt } from '../header-name-cache.js';
import { type HeaderMapSlot, LazyHeaderMap, joinedValue, pairsOf, removeFrom, replaceIn } from '../lazy-header-map.js';
import type { PluginVm } from '../plugin-vm.js';

type HostFn = (...args: number[]) => number;

/** The map `type` names in the active context, or undefined when it does not exist here (NOT_FOUND). */
export function mapOf(vm: PluginVm, type: number): HeaderMapSlot | undefined {
  const ctx = vm.active;
  const stream = ctx?.kind === 'stream' ? ctx : undefined;
  switch (type) {
    case MapType.HttpRequestHeaders:
      return stream?.requestHeaders;
    case MapType.HttpRequestTrailers:
      return stream?.requestTrailers;
    case MapType.HttpResponseHeaders:
      return stream?.responseHeaders;
    case MapType.HttpResponseTrailers:
      return stream?.responseTrailers;
    case MapType.GrpcReceiveInitialMetadata:
    case MapType.GrpcReceiveTrailingMetadata:
      return vm.grpcReceive?.metadata;
    case MapType.HttpCallResponseHeaders:
      return vm.callResponse?.headers;
    case MapType.HttpCallResponseTrailers:
      return vm.callResponse?.trailers;
    default:
      return undefined;
  }
}

export function headerImports(vm: PluginVm): Record<string, HostFn> {
  const legacyMissingIsEmpty = vm.compiled.abi === '0.1.0';
  const keyAt = (ptr: number, len: number): string | undefined => (vm.mem.inBounds(ptr, len) ? headerNameAt(vm.mem, ptr, len) : undefined);
  const badType = (type: number): boolean => type < 0 || type > MapType.HttpCallResponseTrailers;

  return {
    proxy_get_header_map_value: (type, kp, kl, rp, rl) => {
      if (badType(type)) return Status.BadArgument;
      const map = mapOf(vm, type);
      if (map === undefined) return Status.NotFound;
      const key = keyAt(kp >>> 0, kl >>> 0);
      if (key === undefined) return Status.InvalidMemoryAccess;
      const value = map instanceof LazyHeaderMap ? map.joined(key) : joinedValue(map, key);
      if (value === undefined) return legacyMissingIsEmpty ? vm.mem.returnLatin1('', rp >>> 0, rl >>> 0) : Status.NotFound;
      return vm.mem.returnLatin1(value, rp >>> 0, rl >>> 0);
    },
    proxy_get_header_map_pairs: (type, rp, rl) => {
      if (badType(type)) return Status.BadArgument;
      const slot = mapOf(vm, type);
      if (slot === undefined) return Status.NotFound;
      const map = pairsOf(slot);
      const size = map.length === 0 ? 0 : serializedSize(map);
      const ptr = vm.mem.allocOut(size, rp >>> 0, rl >>> 0);
      if (ptr < 0) return Status.InvalidMemoryAccess;
      if (size > 0) writeMap(vm.mem.buf, ptr, map);
      return Status.Ok;
    },
    proxy_get_header_map_size: (type, ret) => {
      if (badType(type)) return Status.BadArgument;
      const map = mapOf(vm, type);
      if (map === undefined) return Status.NotFound;
      return vm.mem.writeU32(ret >>> 0, serializedSize(pairsOf(map)));
    },
    proxy_set_header_map_pairs: (type, ptr, len) => {
      if (badType(type)) return Status.BadArgument;
      const slot = mapOf(vm, type);
      if (slot === undefined) return Status.NotFound;
      if (!vm.mem.inBounds(ptr >>> 0, len >>> 0)) return Status.InvalidMemoryAccess;
      const pairs = readMap(vm.mem.buf, ptr >>> 0, len >>> 0);
      if (pairs === undefined) return Status.BadArgument;
      const map = pairsOf(slot);
      // A filter that rebuilds the map may leave the pseudo-headers out (Kong's key-auth does): they are the request
      // line and status, not fields it meant to delete, so those it did not set keep their values, first as before.
      const kept = type === MapType.HttpRequestHeaders || type === MapType.HttpResponseHeaders ? keptPseudoHeaders(map, pairs) : undefined;
      map.length = 0;
      if (kept !== undefined) for (const p of kept) map.push(p);
      for (const p of pairs) map.push(p);
      return Status.Ok;
    },
    proxy_add_header_map_value: (type, kp, kl, vp, vl) => {
      if (badType(type)) return Status.BadArgument;
      const map = mapOf(vm, type);
      if (map === undefined) return Status.NotFound;
      const key = keyAt(kp >>> 0, kl >>> 0);
      if (key === undefined || !vm.mem.inBounds(vp >>> 0, vl >>> 0)) return Status.InvalidMemoryAccess;
      const pair: [string, string] = [key, headerValueAt(vm.mem, vp >>> 0, vl >>> 0)];
      if (map instanceof LazyHeaderMap) map.append(pair);
      else map.push(pair);
      return Status.Ok;
    },
    proxy_replace_header_map_value: (type, kp, kl, vp, vl) => {
      if (badType(type)) return Status.BadArgument;
      const slot = mapOf(vm, type);
      if (slot === undefined) return Status.NotFound;
      const key = keyAt(kp >>> 0, kl >>> 0);
      if (key === undefined || !vm.mem.inBounds(vp >>> 0, vl >>> 0)) return Status.InvalidMemoryAccess;
      const value = headerValueAt(vm.mem, vp >>> 0, vl >>> 0);
      if (slot instanceof LazyHeaderMap) slot.replace(key, value);
      else replaceIn(slot, key, value);
      return Status.Ok;
    },
    proxy_remove_header_map_value: (type, kp, kl) => {
      if (badType(type)) return Status.BadArgument;
      const slot = mapOf(vm, type);
      if (slot === undefined) return Status.NotFound;
      const key = keyAt(kp >>> 0, kl >>> 0);
      if (key === undefined) return Status.InvalidMemoryAccess;
      if (slot instanceof LazyHeaderMap) slot.remove(key);
      else removeFrom(slot, key, 0);
      return Status.Ok;
    },
  };
}

/** Pseudo-headers of `map` whose names `next` lacks, or undefined when none. */
function keptPseudoHeaders(map: HeaderPairs, next: HeaderPairs): HeaderPairs | undefined {
  let kept: HeaderPairs | undefined;
  for (const p of map) {
    if (p[0].charCodeAt(0) !== 0x3a || next.some((q) => q[0] === p[0])) continue;
    (kept ??= []).push(p);
  }
  return kept;
}

