// A header value read in place where the host wrote it (the ABI's malloc hand-off), with no managed copy and no string:
// for hot paths that only compare, hash or slice the bytes (a token looked up in a cache) before releasing them.
import { WasmResult } from "./abi-enums";
import { HeaderMap } from "./headers";
import { proxy_get_header_map_value, proxy_replace_header_map_value } from "./imports";
import { clearOut, decodeUtf8, outLen, outPtr } from "./memory";

/**
 * A block of raw (non-GC) guest memory the host filled: valid until release(), which frees it. Reusing one HostBlock
 * (a field or global) for every request keeps a read allocation-free apart from the host's own block.
 *
 * @example
 *   const AUTHORIZATION = utf8("authorization");
 *   const value = new HostBlock();
 *   if (headerValueInto(requestHeaders, AUTHORIZATION, value)) {
 *     const firstByte = value.len > 0 ? load<u8>(value.ptr) : 0;
 *     value.release();
 *   }
 */
export class HostBlock {
  ptr: usize = 0;
  len: usize = 0;

  /** The bytes as text (strict UTF-8, invalid sequences as U+FFFD), as HeaderMap.get would have returned them. */
  text(): string {
    return this.len == 0 ? "" : decodeUtf8(this.ptr, this.len);
  }

  /** Takes the block the hostcall that just returned Ok wrote to the out slots (clearOut() before the call). */
  takeOut(): void {
    this.ptr = load<usize>(outPtr());
    this.len = this.ptr == 0 ? 0 : <usize>load<u32>(outLen());
  }

  /** Frees the block; safe to call twice or on an empty block. */
  release(): void {
    if (this.ptr != 0) heap.free(this.ptr);
    this.ptr = 0;
    this.len = 0;
  }
}

/**
 * Reads `name` (UTF-8, lower case; encode it once with utf8) of `map` into `out`, releasing what `out` held first.
 * False when the header is absent or the map is not available in this callback (`out` is then empty).
 */
export function headerValueInto(map: HeaderMap, name: ArrayBuffer, out: HostBlock): bool {
  out.release();
  clearOut();
  const st = <WasmResult>proxy_get_header_map_value(map.mapType, changetype<usize>(name), name.byteLength, outPtr(), outLen());
  if (st != WasmResult.Ok) return false;
  out.takeOut();
  return true;
}

/**
 * Sets the only value of `name` (UTF-8, lower case; encode it once with utf8) in `map` to the bytes `value` holds, adding
 * it when absent, as HeaderMap.replaceRaw does: a value read in place (a request's Origin) echoed into a response with
 * no string or copy made of it. `value` stays held.
 */
export function replaceHeaderFromBlock(map: HeaderMap, name: ArrayBuffer, value: HostBlock): WasmResult {
  return <WasmResult>proxy_replace_header_map_value(map.mapType, changetype<usize>(name), name.byteLength, value.ptr, value.len);
}
