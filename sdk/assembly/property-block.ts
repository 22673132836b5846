// A property's value read in place into a HostBlock (see host-block.ts), with no managed copy, string or result object:
// for hot paths that only match or slice it (authz matching `source.principal` on every request).
import { WasmResult } from "./abi-enums";
import { HostBlock } from "./host-block";
import { proxy_get_property } from "./imports";
import { clearOut, outLen, outPtr, scratchLen } from "./memory";
import { encodePath } from "./properties";

/**
 * Reads the property at `path` (dotted, as for getProperty) into `out`, releasing what `out` held first. False when
 * the host has no such property here (`out` is then empty).
 *
 * @example
 *   const peer = new HostBlock();
 *   if (propertyInto("source.principal", peer)) {
 *     const spiffe = peer.len > 9 && load<u8>(peer.ptr) == 0x73;
 *     peer.release();
 *   }
 */
export function propertyInto(path: string, out: HostBlock): bool {
  out.release();
  const p = encodePath(path);
  clearOut();
  if (<WasmResult>proxy_get_property(p, scratchLen(0), outPtr(), outLen()) != WasmResult.Ok) return false;
  out.takeOut();
  return true;
}

/**
 * `path` (dotted, as for getProperty) in the NUL-separated framing the host reads: encode it once, at configure time
 * or in a global, and read with propertyBytesInto on every request with nothing encoded per call.
 */
export function propertyPath(path: string): ArrayBuffer {
  const p = encodePath(path);
  const n = scratchLen(0);
  const out = new ArrayBuffer(<i32>n);
  memory.copy(changetype<usize>(out), p, n);
  return out;
}

/**
 * propertyInto with the path already framed by propertyPath.
 *
 * @example
 *   const SOURCE_PRINCIPAL = propertyPath("source.principal");
 *   const peer = new HostBlock();
 *   if (propertyBytesInto(SOURCE_PRINCIPAL, peer)) peer.release();
 */
export function propertyBytesInto(path: ArrayBuffer, out: HostBlock): bool {
  out.release();
  clearOut();
  if (<WasmResult>proxy_get_property(changetype<usize>(path), path.byteLength, outPtr(), outLen()) != WasmResult.Ok) return false;
  out.takeOut();
  return true;
}
