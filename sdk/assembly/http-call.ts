// HTTP callouts. AssemblyScript has no closures, so the response goes to the context that made the call: its
// onHttpCallResponse(token, response) runs with that context made effective, so a stream can edit its headers,
// continue or answer locally right there. Calls of a stream that ends first are dropped.
import { MapType, WasmResult } from "./abi-enums";
import { Context } from "./context";
import { HeaderPair, HeaderMap, serializeHeaders } from "./headers";
import { HostBuffer } from "./buffers";
import { BufferType } from "./abi-enums";
import { HttpCallResponse } from "./http-call-response";
import { installHttpCallHooks } from "./dispatch-hooks";
import { proxy_http_call } from "./imports";
import { outWord, utf8 } from "./memory";
import { U32Result } from "./result";

const pending = new Map<u32, Context>();
const EMPTY = new ArrayBuffer(0);

/**
 * Sends an HTTP request to `cluster` (`headers` must include :method, :path and :authority). Answers the call's token;
 * the response arrives in `handler.onHttpCallResponse(token, response)`. A non-Ok status means nothing was sent
 * (BadArgument: missing pseudo-headers; InternalFailure: the host cannot make calls).
 *
 * @example
 *   class Auth extends HttpContext {
 *     onRequestHeaders(n: u32, eos: bool): HeadersAction {
 *       const call = httpCall("authz", [new HeaderPair(":method", "GET"), new HeaderPair(":path", "/check"),
 *         new HeaderPair(":authority", "authz")], null, [], 1000, this);
 *       return call.ok ? HeadersAction.StopIteration : HeadersAction.Continue;
 *     }
 *     onHttpCallResponse(token: u32, response: HttpCallResponse): void {
 *       if (!response.failed && response.status == 200) this.continueRequest();
 *       else this.sendLocalResponse(403, "denied\n");
 *     }
 *   }
 */
export function httpCall(
  cluster: string, headers: Array<HeaderPair>, body: ArrayBuffer | null, trailers: Array<HeaderPair>, timeoutMs: u32, handler: Context,
): U32Result {
  const c = utf8(cluster);
  const h = serializeHeaders(headers);
  const t = serializeHeaders(trailers);
  const b = body === null ? EMPTY : body!;
  const st = <WasmResult>proxy_http_call(
    changetype<usize>(c), c.byteLength, changetype<usize>(h), h.byteLength, changetype<usize>(b), b.byteLength,
    changetype<usize>(t), t.byteLength, timeoutMs, outWord(),
  );
  if (st != WasmResult.Ok) return new U32Result(st, 0);
  const token = load<u32>(outWord());
  installHttpCallHooks(deliverHttpCallResponse, forgetHttpCalls);
  pending.set(token, handler);
  return new U32Result(st, token);
}

/** Number of calls waiting for a response (diagnostics and tests). */
export function pendingHttpCalls(): i32 {
  return pending.size;
}

/** Dispatches proxy_on_http_call_response. */
export function deliverHttpCallResponse(token: u32, numHeaders: u32, bodySize: u32, numTrailers: u32): void {
  if (!pending.has(token)) return;
  const handler = pending.get(token);
  pending.delete(token);
  let response: HttpCallResponse;
  if (numHeaders == 0) {
    response = new HttpCallResponse(true, 0, new Array<HeaderPair>(), EMPTY, new Array<HeaderPair>());
  } else {
    const headers = new HeaderMap(MapType.HttpCallResponseHeaders).all();
    let status: u32 = 0;
    for (let i = 0; i < headers.length; i++) {
      if (headers[i].name == ":status") { status = parseStatus(headers[i].value); break; }
    }
    const body = bodySize == 0 ? EMPTY : new HostBuffer(BufferType.HttpCallResponseBody).readAll().value;
    const trailers = numTrailers == 0 ? new Array<HeaderPair>() : new HeaderMap(MapType.HttpCallResponseTrailers).all();
    response = new HttpCallResponse(false, status, headers, body, trailers);
  }
  if (handler.activate() != WasmResult.Ok) return;
  handler.onHttpCallResponse(token, response);
}

/** Drops the calls of a context that is going away. */
export function forgetHttpCalls(ctx: Context): void {
  const tokens = pending.keys();
  for (let i = 0; i < tokens.length; i++) if (pending.get(tokens[i]) === ctx) pending.delete(tokens[i]);
}

function parseStatus(s: string): u32 {
  let v: u32 = 0;
  for (let i = 0; i < s.length && i < 3; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return 0;
    v = v * 10 + <u32>(c - 0x30);
  }
  return v;
}
