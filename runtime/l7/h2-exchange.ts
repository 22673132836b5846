/**
 * One h2c or gRPC stream through the chain, with HTTP/1's behaviour: route → filters (headers, bodies, trailers) →
 * retries with budget → timeouts → load balancing → an upstream attempt, mirroring, and one telemetry record and
 * access-log line. This file is the request side and the answer: the route match, the filters and what they may change
 * (BodyAccess), the request body's owner, and which attempt's answer the client gets. The layers below are listed in
 * h2-exchange-state.
 */
import type { HeaderList } from './header-list.js';
import { H2ResponseWriter } from './h2-response-writer.js';
import type { L7Context } from './l7-context.js';
import { observeBody, onRequestBodyHook, onRequestTrailersHook, runFilterHook, runRequestHeaders, type BodyAccess } from './l7-filter.js';
import { L7_ERROR, localReply } from './local-reply.js';
import { applyHeaderOps } from './route-actions.js';
import { routeTableFor } from './route-table.js';
import type { AttemptFailure } from './retry-policy.js';
import { ExchangeRequestInfo } from './exchange-request-info.js';
import http2 from 'node:http2';
import type { RequestBodyOwner } from './h2-request-body.js';
import type { ResponseOwner } from './h2-response-writer.js';
import { H2ExchangeRouter } from './h2-exchange-router.js';

const { NGHTTP2_INTERNAL_ERROR } = http2.constants;
export class H2Exchange extends H2ExchangeRouter implements RequestBodyOwner, ResponseOwner, BodyAccess {
  start(): void {
    const { ctx, target, stream } = this;
    stream.on('error', () => undefined);
    stream.on('close', () => this.onDownstreamClose());
    const snapshot = ctx.state.current;
    const service = target.service === undefined ? undefined : (snapshot.serviceByName(target.service.key) ?? target.service);
    const port = target.servicePort?.port ?? target.originalDst.port;
    const q = this.path.indexOf('?');
    const route = routeTableFor(snapshot, service, port).match(this.method, q === -1 ? this.path : this.path.slice(0, q), this.headers);
    if (route === undefined) return this.reply(localReply(404, L7_ERROR.noRoute, 'NR', 'no route matched'));
    this.route = route;
    if (route.requestHeaders !== undefined) applyHeaderOps(this.headers, route.requestHeaders);
    const filters = ctx.filtersFor(snapshot, { ...target, service });
    if (filters.length > 0) this.startFilters(filters, service?.hostname);
    if (this.streams.length === 0) return this.afterRequestHeaders();
    const status = runRequestHeaders(this.streams, this.headers, !this.body.present);
    if (status === undefined) return this.afterRequestHeaders();
    this.settle(status, () => this.afterRequestHeaders());
  }

  protected startFilters(filters: ReturnType<L7Context['filtersFor']>, destinationService: string | undefined): void {
    const { target } = this;
    const info = (this.info = new ExchangeRequestInfo(this.method, this.path, this.authority, 'HTTP/2', target, destinationService, this.headers));
    let whole = false;
    let chunkHooks = false;
    let trailerHooks = false;
    for (const f of filters) {
      const s = f.start(info, this);
      if (s === undefined) continue;
      this.streams.push(s);
      if (s.onRequestBody !== undefined) {
        if (f.bufferRequestBody === true) this.body.collectWhole();
        else this.requestChunkHooks = true;
      }
      if (s.onResponseBody !== undefined) {
        if (f.bufferResponseBody === true) whole = true;
        else chunkHooks = true;
      }
      if (s.onRequestTrailers !== undefined) this.requestTrailerHooks = true;
      if (s.onResponseTrailers !== undefined) trailerHooks = true;
    }
    this.responseFilters = { streams: this.streams, whole, chunkHooks, trailerHooks };
  }

  protected afterRequestHeaders(): void {
    if (this.phase === 'done') return;
    this.headersDone = true;
    // A body collected whole goes on once complete (its filters first); a request without one goes straight on.
    if (this.body.collectingWhole && this.body.present) {
      if (this.body.complete) this.onWholeBody();
      return;
    }
    this.dispatch();
  }

  onStreamedChunk(chunk: Buffer, end: boolean): void {
    if (this.requestChunkHooks) observeBody(this.streams, onRequestBodyHook, chunk.length === 0 ? [] : [chunk], end);
  }

  onStreamedTrailers(trailers: HeaderList): Promise<void> | undefined {
    if (this.phase === 'done' || !this.requestTrailerHooks) return undefined;
    const status = runFilterHook(this.streams, 0, onRequestTrailersHook, trailers);
    if (status === undefined) return undefined;
    if (!(status instanceof Promise)) return void this.reply(status);
    return new Promise<void>((resolve) => this.settle(status, resolve));
  }

  onWholeBody(): void {
    if (!this.headersDone || this.phase !== 'filters') return;
    const body = this.body.takeWhole();
    const afterBody = (): void => {
      this.body.final ??= body;
      const t = this.body.trailers;
      if (t === undefined || !this.requestTrailerHooks) return this.dispatch();
      this.settle(runFilterHook(this.streams, 0, onRequestTrailersHook, t), () => this.dispatch());
    };
    // Body callbacks are for bodies: an empty one goes on, as Envoy never calls on_request_body for it.
    if (body.length === 0) return afterBody();
    this.settle(runFilterHook(this.streams, 0, onRequestBodyHook, body, true), afterBody);
  }

  onTooLarge(): void {
    this.reply(localReply(413, L7_ERROR.bodyTooLarge, 'DPE', 'request body exceeds the buffering limit'));
  }

  onDrain(): void {
    this.body.resume();
  }

  onResponse(status: number, headers: HeaderList, endStream: boolean): void {
    if (this.phase !== 'upstream') return;
    this.clearTryTimer();
    this.status = status;
    const gs = headers.get('grpc-status');
    if (gs !== undefined) this.grpcStatus = gs;
    this.cluster!.report(this.endpoint!, status >= 500 ? (status >= 502 && status <= 504 ? 'gateway' : '5xx') : 'success', Date.now());
    const verdict = this.retryVerdict();
    if (verdict === 'retry') return this.retryAfterAnswer(status);
    if (verdict === 'exhausted') this.flags = 'URX';
    // A gRPC status in trailers decides a retry too: hold the headers until the first message or the trailers.
    if (!endStream && gs === undefined && this.holdForStatus && this.attempts <= this.route!.retry!.attempts && this.canReplay()) {
      this.held = { headers, endStream };
      return;
    }
    this.commit(headers, endStream);
  }

  onData(chunk: Buffer): void {
    if (this.held !== undefined) this.commit(this.held.headers, this.held.endStream);
    if (this.phase === 'response') this.response!.data(chunk);
  }

  onTrailers(trailers: HeaderList): void {
    const gs = trailers.get('grpc-status');
    if (gs !== undefined) this.grpcStatus = gs;
    const held = this.held;
    if (held !== undefined) {
      const verdict = this.retryVerdict();
      if (verdict === 'retry') return this.retryAfterAnswer(this.status);
      if (verdict === 'exhausted') this.flags = 'URX';
      this.commit(held.headers, held.endStream);
    }
    if (this.phase === 'response') this.response!.trailers = trailers;
  }

  onEnd(): void {
    if (this.held !== undefined) this.commit(this.held.headers, this.held.endStream);
    if (this.phase !== 'response') return;
    this.endAttempt('success');
    this.response!.end();
  }

  onFailure(kind: Exclude<AttemptFailure, 'timeout'>, message: string, rstCode: number): void {
    if (this.phase === 'upstream') {
      this.clearTryTimer();
      this.held = undefined;
      this.attempt = undefined;
      this.endAttempt('local-failure');
      return this.attemptFailed(kind, message);
    }
    if (this.phase !== 'response') return;
    this.attempt = undefined;
    this.endAttempt('local-failure');
    this.flags ||= 'UC';
    if (this.response?.headSent !== true) return this.reply(localReply(503, L7_ERROR.upstreamReset, 'UC', `upstream reset the stream: ${message}`));
    // Mid-body loss: the client already has a status; only resetting the stream is honest.
    this.phase = 'done';
    this.body.stop();
    if (!this.stream.destroyed) this.stream.close(rstCode === 0 ? NGHTTP2_INTERNAL_ERROR : rstCode);
  }

  /** Forwards this attempt's answer: route header operations, then the response filters and the client. */
  protected commit(headers: HeaderList, endStream: boolean): void {
    this.held = undefined;
    this.phase = 'response';
    const ops = this.route?.responseHeaders;
    if (ops !== undefined) applyHeaderOps(headers, ops);
    const wantsTrailers = this.grpc || this.headers.get('te') === 'trailers';
    this.response = new H2ResponseWriter(this.stream, this, this.responseFilters, this.status, headers, endStream, wantsTrailers, this.ctx.limits.maxBufferedBodyBytes);
    this.response.start();
  }

  replaceRequestBody(body: Buffer): void {
    this.body.final = body;
  }

  replaceResponseBody(body: Buffer): void {
    this.responseBodyReplacement = body;
  }

  /** Envoy semantics for :method/:path/:authority edits; the authority leaves as the upstream :authority. */
  setRequestLine(method: string, path: string, authority: string): void {
    this.method = method;
    this.path = path;
    this.authority = authority;
    this.rematchRoute = true;
  }

  clearRouteCache(): void {
    this.rematchRoute = true;
  }

  /** A filter's :status edit (Envoy semantics, see BodyAccess.setResponseStatus). */
  setResponseStatus(status: number): string | undefined {
    const response = this.response;
    if (response === undefined || response.headSent) return 'the response head already went out';
    if ((status === 204 || status === 304) && !response.endStream) return `a ${status} response cannot carry the upstream's body`;
    response.status = status;
    this.status = status;
    return undefined;
  }
}
