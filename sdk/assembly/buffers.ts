// Byte buffers the host owns: request/response bodies (readable and editable in body callbacks), the plugin and VM
// configuration, and callout payloads. Reads copy into managed memory; edits splice the host's buffer.
import { BufferType, WasmResult } from "./abi-enums";
import { proxy_get_buffer_bytes, proxy_get_buffer_status, proxy_set_buffer_bytes } from "./imports";
import { clearOut, outLen, outPtr, outWord, takeOutBytes } from "./memory";
import { BytesResult, U32Result, decodeBytes } from "./result";

/**
 * A host buffer.
 *
 * @example
 *   onResponseBody(size: u32, endOfStream: bool): DataAction {
 *     if (!endOfStream) return DataAction.StopIterationAndBuffer;
 *     const body = responseBody.readAll();
 *     if (body.ok) responseBody.replaceAll(String.UTF8.encode(body.text().replaceAll("secret", "******")));
 *     return DataAction.Continue;
 *   }
 */
export class HostBuffer {
  constructor(public readonly bufferType: BufferType) {}

  /** Up to `maxSize` bytes from `start`; NotFound when this buffer is not available in the current callback. */
  read(start: u32, maxSize: u32): BytesResult {
    clearOut();
    const st = <WasmResult>proxy_get_buffer_bytes(this.bufferType, start, maxSize, outPtr(), outLen());
    if (st != WasmResult.Ok) return new BytesResult(st, new ArrayBuffer(0));
    return new BytesResult(st, takeOutBytes());
  }

  readAll(): BytesResult {
    return this.read(0, u32.MAX_VALUE);
  }

  /** The whole buffer as UTF-8 text, or "" when unavailable. */
  text(): string {
    const r = this.readAll();
    return r.ok ? decodeBytes(r.value) : "";
  }

  size(): U32Result {
    const st = <WasmResult>proxy_get_buffer_status(this.bufferType, outWord(), outWord() + 4);
    return new U32Result(st, st == WasmResult.Ok ? load<u32>(outWord()) : 0);
  }

  /** Replaces `size` bytes at `start` with `data` (the host's splice; only bodies are writable). */
  splice(start: u32, size: u32, data: ArrayBuffer): WasmResult {
    return <WasmResult>proxy_set_buffer_bytes(this.bufferType, start, size, changetype<usize>(data), data.byteLength);
  }

  replaceAll(data: ArrayBuffer): WasmResult {
    return this.splice(0, u32.MAX_VALUE, data);
  }

  append(data: ArrayBuffer): WasmResult {
    return this.splice(u32.MAX_VALUE, 0, data);
  }

  prepend(data: ArrayBuffer): WasmResult {
    return this.splice(0, 0, data);
  }
}

export const requestBody = new HostBuffer(BufferType.RequestBody);
export const responseBody = new HostBuffer(BufferType.ResponseBody);
export const httpCallResponseBody = new HostBuffer(BufferType.HttpCallResponseBody);
export const pluginConfiguration = new HostBuffer(BufferType.PluginConfiguration);
export const vmConfiguration = new HostBuffer(BufferType.VmConfiguration);
export const foreignFunctionArguments = new HostBuffer(BufferType.ForeignFunctionArguments);
