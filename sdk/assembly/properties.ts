// Properties (Envoy attributes such as `source.principal`, `request.id`, `plugin_name`): paths are passed with NUL
// separators, the framing the Rust and Go SDKs use and spec PR #94 documents; values are raw bytes, integers 8-byte LE.
import { WasmResult } from "./abi-enums";
import { proxy_get_property, proxy_set_property } from "./imports";
import { clearOut, outLen, outPtr, takeOutBytes, utf8 } from "./memory";
import { BytesResult, StringResult, U64Result, decodeBytes } from "./result";

/** `source.principal` → `source\0principal`. */
function encodePath(path: string): ArrayBuffer {
  const buf = utf8(path);
  const p = changetype<usize>(buf);
  for (let i = 0; i < buf.byteLength; i++) if (load<u8>(p + i) == 0x2e) store<u8>(p + i, 0);
  return buf;
}

/** The raw value at `path`; NotFound when the host has no such property here. */
export function getProperty(path: string): BytesResult {
  const p = encodePath(path);
  clearOut();
  const st = <WasmResult>proxy_get_property(changetype<usize>(p), p.byteLength, outPtr(), outLen());
  if (st != WasmResult.Ok) return new BytesResult(st, new ArrayBuffer(0));
  return new BytesResult(st, takeOutBytes());
}

/**
 * A string property.
 * @example
 *   const principal = getPropertyString("source.principal");
 *   if (principal.ok) requestHeaders.replace("x-source-principal", principal.value);
 */
export function getPropertyString(path: string): StringResult {
  const r = getProperty(path);
  return new StringResult(r.status, r.ok ? decodeBytes(r.value) : "");
}

/** An integer property (8-byte little-endian, as Envoy encodes them); SerializationFailure when it is not 8 bytes. */
export function getPropertyInt(path: string): U64Result {
  const r = getProperty(path);
  if (!r.ok) return new U64Result(r.status, 0);
  if (r.value.byteLength != 8) return new U64Result(WasmResult.SerializationFailure, 0);
  return new U64Result(WasmResult.Ok, load<u64>(changetype<usize>(r.value)));
}

export function setProperty(path: string, value: ArrayBuffer): WasmResult {
  const p = encodePath(path);
  return <WasmResult>proxy_set_property(changetype<usize>(p), p.byteLength, changetype<usize>(value), value.byteLength);
}

export function setPropertyString(path: string, value: string): WasmResult {
  return setProperty(path, utf8(value));
}
