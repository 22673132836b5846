/** The L7 filter interface (one filter per concern, hono/linkerd style) and the runner that calls a chain of them, staying synchronous unless a filter pauses. */
import type { HeaderList } from './header-list.js';

/** A response the proxy (or a filter) produces itself instead of forwarding; it always carries `x-weft-error` when `code` is set. */
export interface LocalReply {
  status: number;
  /** Stable error code for `x-weft-error`; absent for deliberate filter replies (e.g. a redirect). */
  code?: string;
  headers?: [string, string][];
  body?: string | Buffer;
  /** Envoy response flag to record (UAEX for an authz denial, RL for a rate limit, ...). */
  flag?: string;
  /** Reset the stream instead of answering (a plugin's proxy_close_stream): HTTP/1 closes the connection. */
  reset?: boolean;
}

/** What a filter callback returns: undefined to continue, a LocalReply to stop, or a Promise of either to pause the stream. */
export type FilterStatus = undefined | LocalReply | Promise<undefined | LocalReply>;

/** Read-only facts about the request a filter may consult. */
export interface FilterRequestInfo {
  readonly method: string;
  readonly path: string;
  readonly authority: string;
  readonly protocol: string;
  readonly sourceAddress: string;
  /** The downstream client's port (absent where the protocol path does not pass it on). */
  readonly sourcePort?: number;
  /** Where the client connected to: the original destination (service VIP or workload address) and port. */
  readonly destinationAddress?: string;
  readonly destinationPort?: number;
  /** The upstream host the current attempt went to, once one was picked (Envoy's `upstream.address`/`upstream.port`). */
  readonly upstreamHost?: () => { readonly address: string; readonly port: number } | undefined;
  readonly sourceIdentity: string | undefined;
  readonly destinationService: string | undefined;
  readonly requestId: string;
}

/** Per-request callbacks; every one is optional. Header lists are mutated in place. */
export interface L7FilterStream {
  onRequestHeaders?(headers: HeaderList, endOfStream: boolean): FilterStatus;
  /** Streaming: each chunk as it passes (observe only). Buffered (`bufferRequestBody`): once, with the whole body; `replaceRequestBody` may swap it. */
  onRequestBody?(chunk: Buffer, endOfStream: boolean): FilterStatus;
  /** Request trailers (HTTP/2, gRPC), edited in place; after a buffered body's onRequestBody. */
  onRequestTrailers?(trailers: HeaderList): FilterStatus;
  onResponseHeaders?(status: number, headers: HeaderList, endOfStream: boolean): FilterStatus;
  onResponseBody?(chunk: Buffer, endOfStream: boolean): FilterStatus;
  onResponseTrailers?(trailers: HeaderList): FilterStatus;
  /** After the exchange completed or failed; never pauses. */
  onDone?(responseCode: number, responseFlags: string): void;
}

/** Swallows the rejection of an observe-only filter call (streamed bodies cannot pause or answer). */
export function observe(status: FilterStatus): void {
  if (status instanceof Promise) status.catch(() => undefined);
}

/** The piece a streaming body callback gets when it only hears that the body ended. */
export const END_OF_BODY: Buffer = Buffer.alloc(0);

/** Mutation hooks handed to a stream: bodies (when its filter buffers them), the request line and the response status. */
export interface BodyAccess {
  replaceRequestBody(body: Buffer): void;
  replaceResponseBody(body: Buffer): void;
  /**
   * Envoy's semantics for a filter that edits the request pseudo-headers: `method` takes effect, `path` (with its query)
   * is the new target, `authority` becomes the Host sent upstream, and the route is matched again before dispatch.
   * Callers validate the values (a token method, an origin-form path, an authority without whitespace).
   */
  setRequestLine(method: string, path: string, authority: string): void;
  /** Envoy's clearRouteCache: request headers changed, so the route is matched again before the request is dispatched. */
  clearRouteCache(): void;
  /**
   * A filter's `:status` edit on the response headers, applied as Envoy does: the client gets that status (with its own
   * reason phrase), and metrics and the access log record it. Callers pass a valid final status (200–999). Answers why
   * it cannot apply (a 204 or 304 on a response that has a body, which the client would read as the next response), or
   * undefined.
   */
  setResponseStatus(status: number): string | undefined;
}

/**
 * One L7 concern (authorization, a Wasm plugin, header rewriting, ...). `start` runs once per request and
 * returns the callbacks for that request, or undefined when the filter has nothing to do for it.
 *
 * @example
 * const addHeader: L7Filter = {
 *   name: 'add-header',
 *   start: () => ({ onRequestHeaders: (headers) => { headers.set('x-hello', 'world'); return undefined; } }),
 * };
 */
export interface L7Filter {
  readonly name: string;
  /** Buffer the whole request body (bounded by l7.maxBufferedBodyBytes, 413 beyond it) before onRequestBody. */
  readonly bufferRequestBody?: boolean;
  /** Buffer the whole response body (500 beyond the bound) before onResponseBody. */
  readonly bufferResponseBody?: boolean;
  start(info: FilterRequestInfo, body: BodyAccess): L7FilterStream | undefined;
}

type Hook<A extends unknown[]> = (stream: L7FilterStream, ...args: A) => FilterStatus;

/**
 * Calls `hook` on each stream in order. Synchronous filters keep the whole run synchronous (the common case
 * costs no Promise); the first filter that returns a Promise switches the rest of the run to async.
 */
export function runFilterHook<A extends unknown[]>(streams: readonly L7FilterStream[], from: number, hook: Hook<A>, ...args: A): FilterStatus {
  for (let i = from; i < streams.length; i++) {
    const r = hook(streams[i]!, ...args);
    if (r === undefined) continue;
    if (r instanceof Promise) return r.then((v) => (v === undefined ? runFilterHook(streams, i + 1, hook, ...args) : v));
    return r;
  }
  return undefined;
}

/** runFilterHook specialised for request headers: no rest-argument arrays on the per-request path. */
export function runRequestHeaders(streams: readonly L7FilterStream[], headers: HeaderList, endOfStream: boolean): FilterStatus {
  for (let i = 0; i < streams.length; i++) {
    const s = streams[i]!;
    if (s.onRequestHeaders === undefined) continue;
    const r = s.onRequestHeaders(headers, endOfStream);
    if (r === undefined) continue;
    if (r instanceof Promise) return r.then((v) => (v === undefined ? runFilterHook(streams, i + 1, onRequestHeadersHook, headers, endOfStream) : v));
    return r;
  }
  return undefined;
}

/** Whether any stream has a response headers hook: without one, nothing reads or edits the response head. */
export function hasResponseHeaderHooks(streams: readonly L7FilterStream[]): boolean {
  for (let i = 0; i < streams.length; i++) if (streams[i]!.onResponseHeaders !== undefined) return true;
  return false;
}

/** runFilterHook specialised for response headers. */
export function runResponseHeaders(streams: readonly L7FilterStream[], status: number, headers: HeaderList, endOfStream: boolean): FilterStatus {
  for (let i = 0; i < streams.length; i++) {
    const s = streams[i]!;
    if (s.onResponseHeaders === undefined) continue;
    const r = s.onResponseHeaders(status, headers, endOfStream);
    if (r === undefined) continue;
    if (r instanceof Promise) return r.then((v) => (v === undefined ? runFilterHook(streams, i + 1, onResponseHeadersHook, status, headers, endOfStream) : v));
    return r;
  }
  return undefined;
}

export const onRequestHeadersHook: Hook<[HeaderList, boolean]> = (s, h, end) => s.onRequestHeaders?.(h, end);
export const onRequestBodyHook: Hook<[Buffer, boolean]> = (s, c, end) => s.onRequestBody?.(c, end);
export const onResponseHeadersHook: Hook<[number, HeaderList, boolean]> = (s, status, h, end) => s.onResponseHeaders?.(status, h, end);
export const onResponseBodyHook: Hook<[Buffer, boolean]> = (s, c, end) => s.onResponseBody?.(c, end);
export const onRequestTrailersHook: Hook<[HeaderList]> = (s, t) => s.onRequestTrailers?.(t);

/**
 * Streaming body callbacks observe each piece of content in order; the last call says whether the body `ended`
 * (with END_OF_BODY when the end came with no bytes). Nothing is called for no content before the end.
 */
export function observeBody(streams: readonly L7FilterStream[], hook: Hook<[Buffer, boolean]>, content: readonly Buffer[], ended: boolean): void {
  if (content.length === 0 && !ended) return;
  const pieces = content.length === 0 ? [END_OF_BODY] : content;
  for (let i = 0; i < pieces.length; i++) {
    const last = ended && i === pieces.length - 1;
    for (const s of streams) observe(hook(s, pieces[i]!, last));
  }
}
export const onResponseTrailersHook: Hook<[HeaderList]> = (s, t) => s.onResponseTrailers?.(t);
