// Typed results of host calls: a WasmResult status plus the value (empty when the status is not Ok). The SDK never
// aborts on a non-Ok status; the plugin decides what a NotFound or an InternalFailure means for it.
import { WasmResult } from "./abi-enums";

export class HostResult {
  constructor(public status: WasmResult) {}

  get ok(): bool {
    return this.status == WasmResult.Ok;
  }
}

export class StringResult extends HostResult {
  constructor(status: WasmResult, public value: string) {
    super(status);
  }
}

export class BytesResult extends HostResult {
  constructor(status: WasmResult, public value: ArrayBuffer) {
    super(status);
  }

  /** The bytes as UTF-8 text (invalid sequences become U+FFFD). */
  text(): string {
    return decodeBytes(this.value);
  }
}

export class U32Result extends HostResult {
  constructor(status: WasmResult, public value: u32) {
    super(status);
  }
}

export class U64Result extends HostResult {
  constructor(status: WasmResult, public value: u64) {
    super(status);
  }
}

import { decodeUtf8 } from "./memory";

export function decodeBytes(buf: ArrayBuffer): string {
  return decodeUtf8(changetype<usize>(buf), <usize>buf.byteLength);
}
