// proxy_call_foreign_function: host extensions by name. The raw form is public for host functions the SDK has no
// typed wrapper for; weft's own are wrapped in weft.ts.
import { WasmResult } from "./abi-enums";
import { proxy_call_foreign_function } from "./imports";
import { clearOut, outLen, outPtr, scratchLen, scratchUtf8, takeOutBytes, takeOutString, utf8 } from "./memory";
import { BytesResult, StringResult } from "./result";

/**
 * Calls host function `name` with `args`; the result bytes come back at once (NotFound: no such function here).
 * An empty result from a weft function means the answer will arrive through proxy_on_foreign_function.
 */
export function callForeignFunction(name: string, args: ArrayBuffer): BytesResult {
  const n = utf8(name);
  clearOut();
  const st = <WasmResult>proxy_call_foreign_function(changetype<usize>(n), n.byteLength, changetype<usize>(args), args.byteLength, outPtr(), outLen());
  if (st != WasmResult.Ok) return new BytesResult(st, new ArrayBuffer(0));
  return new BytesResult(st, takeOutBytes());
}

/**
 * callForeignFunction for text both ways (JSON payloads): name and payload are encoded into scratch memory and the
 * answer decoded straight from the host's block, so a call allocates only the answer string.
 */
export function callForeignFunctionText(name: string, payload: string): StringResult {
  const n = scratchUtf8(name, 0);
  const p = scratchUtf8(payload, 1);
  clearOut();
  const st = <WasmResult>proxy_call_foreign_function(n, scratchLen(0), p, scratchLen(1), outPtr(), outLen());
  if (st != WasmResult.Ok) return new StringResult(st, "");
  return new StringResult(st, takeOutString());
}
