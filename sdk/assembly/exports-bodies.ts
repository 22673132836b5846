// The body and trailer callbacks: dispatch only. Part of exports.ts; left out of exports-headers-only.ts.
import { DataAction, HeadersAction } from "./abi-enums";
import { enter, httpContextOf, leave } from "./context-lookup";

export function proxy_on_request_body(id: u32, bodySize: u32, endOfStream: bool): DataAction {
  enter(id);
  const c = httpContextOf(id);
  const a = c === null ? DataAction.Continue : c.onRequestBody(bodySize, endOfStream);
  leave();
  return a;
}

export function proxy_on_request_trailers(id: u32, trailerCount: u32): HeadersAction {
  enter(id);
  const c = httpContextOf(id);
  const a = c === null ? HeadersAction.Continue : c.onRequestTrailers(trailerCount);
  leave();
  return a;
}

export function proxy_on_response_body(id: u32, bodySize: u32, endOfStream: bool): DataAction {
  enter(id);
  const c = httpContextOf(id);
  const a = c === null ? DataAction.Continue : c.onResponseBody(bodySize, endOfStream);
  leave();
  return a;
}

export function proxy_on_response_trailers(id: u32, trailerCount: u32): HeadersAction {
  enter(id);
  const c = httpContextOf(id);
  const a = c === null ? HeadersAction.Continue : c.onResponseTrailers(trailerCount);
  leave();
  return a;
}
