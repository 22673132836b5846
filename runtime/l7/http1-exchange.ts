/**
 * One HTTP/1.x request through the chain: route match → filters (authorization, plugins) → retry → timeout → load
 * balancing → pooled upstream connection, with the response streamed back and one telemetry record and access-log
 * line at the end. This file is the request side: the route match, the filters' request callbacks and what they may
 * change (BodyAccess), and the request body (streamed, retained for retries, or buffered for body filters). The layers
 * below are listed in http1-exchange-state.
 */
import { observeBody, onRequestBodyHook, runFilterHook, runRequestHeaders, type BodyAccess } from './l7-filter.js';
import { L7_ERROR, localReply } from './local-reply.js';
import { ExchangeRequestInfo } from './exchange-request-info.js';
import { Http1ExchangeResponse } from './http1-exchange-response.js';
import { NO_BYTES, NO_STREAMS } from './http1-exchange-state.js';

/** Request bodies up to this size are kept so the request can be retried. */
const RETRY_BUFFER_BYTES = 64 * 1024;

export class Http1Exchange extends Http1ExchangeResponse implements BodyAccess {
  start(): void {
    const ctx = this.conn.ctx;
    const snapshot = ctx.state.current;
    const target = this.conn.currentTarget(snapshot);
    this.target = target;
    const table = this.conn.routeTable;
    if (this.badTarget !== undefined) {
      this.keepAlive = false;
      return this.replyLocal(localReply(400, L7_ERROR.badRequest, 'DPE', this.badTarget));
    }
    // HTTP/1.0 may omit Host; the upstream (HTTP/1.1) needs one, so the destination's name stands in.
    if (this.authority === '') this.authority = target.service?.hostname ?? `${target.originalDst.address}:${target.originalDst.port}`;
    const route = table.match(this.head.method, this.path, this.headers);
    if (this.head.upgrade || this.head.method === 'CONNECT') this.keepAlive = false;
    if (this.head.method === 'CONNECT' && route?.connect !== true) return this.refuseConnect();
    if (route === undefined) return this.replyLocal(localReply(404, L7_ERROR.noRoute, 'NR', 'no route matched'));
    this.route = route;

    const filters = this.conn.filters;
    if (filters.length > 0) {
      const info = (this.info = new ExchangeRequestInfo(this.head.method, this.head.target, this.authority, this.head.minor === 1 ? 'HTTP/1.1' : 'HTTP/1.0', target, target.service?.hostname, this.headers));
      for (const f of filters) {
        const s = f.start(info, this);
        if (s === undefined) continue;
        // A list made with its first element has room for just it; push on [] grows a store for sixteen.
        if (this.streams === NO_STREAMS) this.streams = [s];
        else this.streams.push(s);
        if (s.onRequestBody !== undefined) this.hasRequestBodyHooks = true;
        if (f.bufferRequestBody === true && s.onRequestBody !== undefined) this.bufferRequest = true;
        if (f.bufferResponseBody === true && s.onResponseBody !== undefined) this.bufferResponse = true;
        if (s.onResponseBody !== undefined) {
          if (this.responseBodyHooks === NO_STREAMS) this.responseBodyHooks = [s];
          else this.responseBodyHooks.push(s);
        }
      }
    }
    if (this.streams.length === 0) return this.afterRequestHeaders();
    const status = runRequestHeaders(this.streams, this.headers, this.reqComplete);
    if (status === undefined) return this.afterRequestHeaders();
    this.settle(status, () => this.afterRequestHeaders());
  }

  protected afterRequestHeaders(): void {
    if (this.phase === 'done') return;
    this.headersDone = true;
    if (this.bufferRequest && !this.reqComplete) {
      // Body arrives through feedRequestBody; dispatch happens once it is complete. A client waiting for
      // 100 Continue gets it from weft (the upstream only sees the finished body), as Envoy does.
      if (this.head.expectContinue) {
        this.conn.io.write('HTTP/1.1 100 Continue\r\n\r\n');
        this.headers.remove('expect');
      }
      return;
    }
    // Body callbacks are for bodies: a request without one goes straight on, as Envoy never calls on_request_body for it.
    if (this.bufferRequest && (this.head.chunked || this.head.contentLength > 0)) return this.runBufferedRequestBody();
    this.dispatch();
  }

  protected runBufferedRequestBody(): void {
    const body = this.bufferedBytes === 0 ? Buffer.alloc(0) : Buffer.concat(this.bufferedBody, this.bufferedBytes);
    this.bufferedBody = NO_BYTES;
    this.settle(runFilterHook(this.streams, 0, onRequestBodyHook, body, true), () => {
      this.replacedRequestBody ??= body;
      this.dispatch();
    });
  }

  replaceRequestBody(body: Buffer): void {
    this.replacedRequestBody = body;
  }

  replaceResponseBody(body: Buffer): void {
    this.replacedResponseBody = body;
  }

  clearRouteCache(): void {
    this.rematchRoute = true;
  }

  /** A filter's :method/:path/:authority edit (Envoy semantics): the authority becomes the Host sent upstream. */
  setRequestLine(method: string, path: string, authority: string): void {
    const h = this.head;
    h.method = method;
    h.target = path;
    const q = path.indexOf('?');
    this.path = q === -1 ? path : path.slice(0, q);
    if (authority !== this.authority) {
      this.authority = authority;
      h.host = authority;
      this.headers.set('host', authority);
    }
    this.requestLineEdited = true;
    this.rematchRoute = true;
  }

  /** Downstream body bytes from `start`; returns where the body ended inside `chunk`, or -1 when all was body. */
  feedRequestBody(chunk: Buffer, start: number): number {
    const framing = this.req;
    // Body filters see content, not chunk coding: a chunked body is decoded for them (and for buffering) while the
    // coded bytes are what a streamed request forwards.
    let decoded: Buffer[] | undefined;
    const decode = framing.scanner !== null && (this.bufferRequest || this.hasRequestBodyHooks) ? (d: Buffer) => (decoded ??= []).push(d) : undefined;
    const end = framing.take(chunk, start, decode);
    if (end === -1) {
      // Where this message ends is unknown: nothing after it can be read as a request (RFC 9112 §6.3). The answer says
      // `connection: close` (or the connection is cut when a response already started) and the rest is never parsed.
      this.keepAlive = false;
      this.replyLocal(localReply(400, L7_ERROR.badRequest, 'DPE', `invalid chunked body: ${framing.error}`));
      this.conn.stopReading();
      return -1;
    }
    let rest = -1;
    if (framing.complete) {
      this.reqComplete = true;
      if (end < chunk.length) rest = end;
    }
    this.reqBytes += end - start;
    const piece = framing.forwardable(chunk, start, end);
    if (this.phase === 'done') return rest;
    const content = decode === undefined ? [piece] : (decoded ?? []);
    if (this.bufferRequest) {
      for (const c of content) this.bufferedBytes += c.length;
      if (this.bufferedBytes > this.conn.ctx.limits.maxBufferedBodyBytes) {
        this.keepAlive = false;
        this.replyLocal(localReply(413, L7_ERROR.bodyTooLarge, 'DPE', 'request body exceeds the buffering limit'));
        return rest;
      }
      if (this.bufferedBody === NO_BYTES) this.bufferedBody = [];
      this.bufferedBody.push(...content);
      if (this.reqComplete && this.phase === 'filters' && this.headersDone) this.runBufferedRequestBody();
      return rest;
    }
    this.forwardRequestPiece(piece, content);
    return rest;
  }

  /** Sends (or queues) `piece` as it came; body filters observe `content`, the same bytes without chunk coding. */
  protected forwardRequestPiece(piece: Buffer, content: readonly Buffer[]): void {
    if (this.reqRetained !== null) {
      this.reqRetainedBytes += piece.length;
      if (this.reqRetainedBytes > RETRY_BUFFER_BYTES) this.reqRetained = null;
      else {
        if (this.reqRetained === NO_BYTES) this.reqRetained = [];
        this.reqRetained.push(piece);
      }
    }
    if (this.hasRequestBodyHooks) observeBody(this.streams, onRequestBodyHook, content, this.reqComplete);
    const up = this.upstream;
    if (up === null || this.phase === 'connecting' || this.phase === 'filters') {
      if (this.reqQueue === NO_BYTES) this.reqQueue = [];
      this.reqQueue.push(piece);
      return;
    }
    if (!up.io.write(piece)) this.conn.io.pause();
  }

  onUpstreamDrain(): void {
    this.conn.io.resume();
  }
}
