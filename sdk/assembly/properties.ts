// Properties (Envoy attributes such as `source.principal`, `request.id`, `plugin_name`): paths are passed with NUL
// separators, the framing the Rust and Go SDKs use and spec PR #94 documents; values are raw bytes, integers 8-byte LE.
import { WasmResult } from "./abi-enums";
import { proxy_get_property, proxy_set_property } from "./imports";
import { clearOut, outLen, outPtr, scratchLen, scratchUtf8, takeOutBytes, takeOutString } from "./memory";
import { BytesResult, StringResult, U64Result } from "./result";

/** `source.principal` → `source\0principal`, in scratch slot 0 (length scratchLen(0)). */
export function encodePath(path: string): usize {
  const p = scratchUtf8(path, 0);
  const n = scratchLen(0);
  for (let i: usize = 0; i < n; i++) if (load<u8>(p + i) == 0x2e) store<u8>(p + i, 0);
  return p;
}

function fetchProperty(path: string): WasmResult {
  const p = encodePath(path);
  clearOut();
  return <WasmResult>proxy_get_property(p, scratchLen(0), outPtr(), outLen());
}

/** The raw value at `path`; NotFound when the host has no such property here. */
export function getProperty(path: string): BytesResult {
  const st = fetchProperty(path);
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
  const st = fetchProperty(path);
  return new StringResult(st, st == WasmResult.Ok ? takeOutString() : "");
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
  return <WasmResult>proxy_set_property(p, scratchLen(0), changetype<usize>(value), value.byteLength);
}

export function setPropertyString(path: string, value: string): WasmResult {
  const p = encodePath(path);
  const v = scratchUtf8(value, 1);
  return <WasmResult>proxy_set_property(p, scratchLen(0), v, scratchLen(1));
}
