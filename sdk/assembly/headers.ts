// Header, trailer and callout maps: a HeaderMap per proxy_map_type_t with get/add/replace/remove and whole-map access,
// plus the ABI's pair serialization (u32 count, count × (u32 key len, u32 value len), then NUL-terminated keys and values).
import { MapType, WasmResult } from "./abi-enums";
import {
  proxy_add_header_map_value, proxy_get_header_map_pairs, proxy_get_header_map_size, proxy_get_header_map_value,
  proxy_remove_header_map_value, proxy_replace_header_map_value, proxy_set_header_map_pairs,
} from "./imports";
import { clearOut, decodeUtf8, dropOut, outLen, outPtr, outWord, scratchLen, scratchUtf8, takeOutBytes, takeOutString, utf8 } from "./memory";
import { BytesResult, StringResult, U32Result } from "./result";

export class HeaderPair {
  constructor(public name: string, public value: string) {}
}

/** Serializes pairs in the ABI's map format (what proxy_set_header_map_pairs, http calls and local responses take). */
export function serializeHeaders(pairs: Array<HeaderPair>): ArrayBuffer {
  const n = pairs.length;
  const names = new Array<ArrayBuffer>(n);
  const values = new Array<ArrayBuffer>(n);
  let size = 4 + n * 8;
  for (let i = 0; i < n; i++) {
    names[i] = utf8(pairs[i].name);
    values[i] = utf8(pairs[i].value);
    size += names[i].byteLength + values[i].byteLength + 2;
  }
  const buf = new ArrayBuffer(size);
  const base = changetype<usize>(buf);
  store<u32>(base, n);
  let sizes = base + 4;
  let data = base + 4 + <usize>n * 8;
  for (let i = 0; i < n; i++) {
    const k = names[i];
    const v = values[i];
    store<u32>(sizes, k.byteLength);
    store<u32>(sizes + 4, v.byteLength);
    sizes += 8;
    memory.copy(data, changetype<usize>(k), k.byteLength);
    data += k.byteLength;
    store<u8>(data++, 0);
    memory.copy(data, changetype<usize>(v), v.byteLength);
    data += v.byteLength;
    store<u8>(data++, 0);
  }
  return buf;
}

/** Parses the ABI's map format; a truncated or inconsistent buffer yields the pairs read so far (never traps). */
export function deserializeHeaders(buf: ArrayBuffer): Array<HeaderPair> {
  const out = new Array<HeaderPair>();
  const len = <usize>buf.byteLength;
  if (len < 4) return out;
  const base = changetype<usize>(buf);
  const n = <usize>load<u32>(base);
  if (n > (len - 4) / 8) return out;
  let data = base + 4 + n * 8;
  const end = base + len;
  for (let i: usize = 0; i < n; i++) {
    const kl = <usize>load<u32>(base + 4 + i * 8);
    const vl = <usize>load<u32>(base + 8 + i * 8);
    if (data + kl + vl + 2 > end) break;
    const name = decodeUtf8(data, kl);
    data += kl + 1;
    const value = decodeUtf8(data, vl);
    data += vl + 1;
    out.push(new HeaderPair(name, value));
  }
  return out;
}

/**
 * One of the host's maps. Names are case-insensitive (the host lower-cases them); values are UTF-8 text where
 * invalid bytes read as U+FFFD — use getBytes for the exact bytes.
 *
 * @example
 *   const ua = requestHeaders.get("user-agent");
 *   if (ua !== null && ua.startsWith("curl/")) requestHeaders.replace("x-client", "cli");
 */
export class HeaderMap {
  constructor(public readonly mapType: MapType) {}

  /** The value (repeated headers joined by ", "), or null when absent or when the map is not available here. */
  get(name: string): string | null {
    return this.fetch(name) == WasmResult.Ok ? takeOutString() : null;
  }

  /** Like get, with the host's status: NotFound when absent or when the map does not exist in this callback. */
  lookup(name: string): StringResult {
    const st = this.fetch(name);
    if (st != WasmResult.Ok) return new StringResult(st, "");
    return new StringResult(st, takeOutString());
  }

  /** The exact value bytes. */
  getBytes(name: string): BytesResult {
    const st = this.fetch(name);
    if (st != WasmResult.Ok) return new BytesResult(st, new ArrayBuffer(0));
    return new BytesResult(st, takeOutBytes());
  }

  has(name: string): bool {
    const st = this.fetch(name);
    if (st == WasmResult.Ok) dropOut();
    return st == WasmResult.Ok;
  }

  /** Appends a value (a repeated header when the name exists). */
  add(name: string, value: string): WasmResult {
    const k = scratchUtf8(name, 0);
    const v = scratchUtf8(value, 1);
    return <WasmResult>proxy_add_header_map_value(this.mapType, k, scratchLen(0), v, scratchLen(1));
  }

  /** Sets the only value of `name`, adding it when absent. */
  replace(name: string, value: string): WasmResult {
    const k = scratchUtf8(name, 0);
    const v = scratchUtf8(value, 1);
    return <WasmResult>proxy_replace_header_map_value(this.mapType, k, scratchLen(0), v, scratchLen(1));
  }

  /** Sets exact bytes (for values that are not UTF-8 text). */
  replaceBytes(name: string, value: ArrayBuffer): WasmResult {
    const k = scratchUtf8(name, 0);
    return <WasmResult>proxy_replace_header_map_value(this.mapType, k, scratchLen(0), changetype<usize>(value), value.byteLength);
  }

  /** Appends exact bytes. */
  addBytes(name: string, value: ArrayBuffer): WasmResult {
    const k = scratchUtf8(name, 0);
    return <WasmResult>proxy_add_header_map_value(this.mapType, k, scratchLen(0), changetype<usize>(value), value.byteLength);
  }

  /** Removes every value of `name`; Ok when it was absent too. */
  remove(name: string): WasmResult {
    const k = scratchUtf8(name, 0);
    return <WasmResult>proxy_remove_header_map_value(this.mapType, k, scratchLen(0));
  }

  /**
   * remove/replace/add with names and values already UTF-8 (utf8(...) once, at configure time): a plugin that edits the
   * same headers on every request then encodes nothing per request.
   */
  removeRaw(name: ArrayBuffer): WasmResult {
    return <WasmResult>proxy_remove_header_map_value(this.mapType, changetype<usize>(name), name.byteLength);
  }

  replaceRaw(name: ArrayBuffer, value: ArrayBuffer): WasmResult {
    return <WasmResult>proxy_replace_header_map_value(this.mapType, changetype<usize>(name), name.byteLength, changetype<usize>(value), value.byteLength);
  }

  addRaw(name: ArrayBuffer, value: ArrayBuffer): WasmResult {
    return <WasmResult>proxy_add_header_map_value(this.mapType, changetype<usize>(name), name.byteLength, changetype<usize>(value), value.byteLength);
  }

  /** Asks the host for `name`'s value, leaving it in the out-words on Ok. */
  private fetch(name: string): WasmResult {
    const k = scratchUtf8(name, 0);
    clearOut();
    return <WasmResult>proxy_get_header_map_value(this.mapType, k, scratchLen(0), outPtr(), outLen());
  }

  /** Every pair in order (repeated headers as separate pairs); empty when the map is not available here. */
  all(): Array<HeaderPair> {
    const r = this.allBytes();
    return r.ok ? deserializeHeaders(r.value) : new Array<HeaderPair>();
  }

  /** The serialized map with the host's status. */
  allBytes(): BytesResult {
    clearOut();
    const st = <WasmResult>proxy_get_header_map_pairs(this.mapType, outPtr(), outLen());
    if (st != WasmResult.Ok) return new BytesResult(st, new ArrayBuffer(0));
    return new BytesResult(st, takeOutBytes());
  }

  /** Replaces the whole map. */
  setAll(pairs: Array<HeaderPair>): WasmResult {
    const buf = serializeHeaders(pairs);
    return <WasmResult>proxy_set_header_map_pairs(this.mapType, changetype<usize>(buf), buf.byteLength);
  }

  /** Size of the serialized map in bytes. */
  serializedSize(): U32Result {
    const st = <WasmResult>proxy_get_header_map_size(this.mapType, outWord());
    return new U32Result(st, st == WasmResult.Ok ? load<u32>(outWord()) : 0);
  }
}

export const requestHeaders = new HeaderMap(MapType.RequestHeaders);
export const requestTrailers = new HeaderMap(MapType.RequestTrailers);
export const responseHeaders = new HeaderMap(MapType.ResponseHeaders);
export const responseTrailers = new HeaderMap(MapType.ResponseTrailers);
export const httpCallResponseHeaders = new HeaderMap(MapType.HttpCallResponseHeaders);
export const httpCallResponseTrailers = new HeaderMap(MapType.HttpCallResponseTrailers);
