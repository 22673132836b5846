// proxy_call_foreign_function: host extensions by name. The raw form is public for host functions the SDK has no
// typed wrapper for; weft's own are wrapped in weft.ts.
import { WasmResult } from "./abi-enums";
import { proxy_call_foreign_function } from "./imports";
import { clearOut, outLen, outPtr, takeOutBytes, utf8 } from "./memory";
import { BytesResult } from "./result";

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
