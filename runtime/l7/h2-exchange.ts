/**
 * One h2c or gRPC stream through the chain, with HTTP/1's behaviour: route → filters (headers, bodies, trailers) →
 * retries with budget → timeouts → load balancing → an upstream attempt (h2c, or HTTP/1.1 for HTTP/1 services),
 * mirroring, and one telemetry record and access-log line. The request body lives in H2RequestBody, the committed
 * response in H2ResponseWriter; this file decides which attempt's answer the client gets.
 *
 * Invariants: a retry happens only before response headers went to the client and with the whole request at hand
 * again; a non-idempotent request whose body reached a reset upstream is never replayed. A gRPC response whose
 * status may still be retried is held until its first message or its trailers.
 */
import http2 from 'node:http2';
import { weftErrorOf } from '../errors.js';
import type { HeaderList } from './header-list.js';
import { grpcStatusFor, headerListFrom } from './h2-headers.js';
import { H2RequestBody, type RequestBodyOwner } from './h2-request-body.js';
import { H2ResponseWriter, type ResponseFilters, type ResponseOwner } from './h2-response-writer.js';
import { startH2Attempt, startHttp1Attempt, type AttemptRequest, type AttemptSink, type UpstreamAttempt } from './h2-upstream-attempt.js';
import type { H2UpstreamPool } from './h2-upstream-pool.js';
import { peerLabels, type PeerLabels } from './http-telemetry.js';
import type { L7Context, L7Target } from './l7-context.js';
import { observeBody, onRequestBodyHook, onRequestTrailersHook, runFilterHook, runRequestHeaders, type FilterStatus, type L7FilterStream, type LocalReply } from './l7-filter.js';
import { exchangeContextFields } from './http-access-log.js';
import { requestHash } from './load-balancer.js';
import { L7_ERROR, localReply } from './local-reply.js';
import { applyHeaderOps, rewritePath } from './route-actions.js';
import { RouteTable, routeTableFor, type CompiledRoute } from './route-table.js';
import { answerVerdict, backoffMs, IDEMPOTENT_METHODS, isRetriableFailure, retriesGrpcStatus, RetrySlot, type AttemptFailure } from './retry-policy.js';
import { continueTrace, newRequestId, type TraceContext } from './traceparent.js';
import type { UpstreamCluster, UpstreamEndpoint } from './upstream-cluster.js';

const { NGHTTP2_CANCEL, NGHTTP2_INTERNAL_ERROR } = http2.constants;
const NO_RESPONSE_FILTERS: ResponseFilters = Object.freeze({ streams: [], whole: false, chunkHooks: false, trailerHooks: false });

/** 'upstream' covers connecting, waiting for and holding a response, and backoff; 'response' is committed to one. */
type Phase = 'filters' | 'upstream' | 'response' | 'done';

export class H2Exchange implements AttemptSink, RequestBodyOwner, ResponseOwner {
  readonly #start = performance.now();
  readonly #headers: HeaderList;
  #method: string;
  #path: string;
  #authority: string;
  /** A filter edited the request (Envoy's clearRouteCache): the route is matched again before the first dispatch. */
  #rematchRoute = false;
  readonly #grpc: boolean;
  readonly #body: H2RequestBody;
  #phase: Phase = 'filters';
  #route: CompiledRoute | undefined;
  #streams: L7FilterStream[] = [];
  #responseFilters: ResponseFilters = NO_RESPONSE_FILTERS;
  #requestChunkHooks = false;
  #requestTrailerHooks = false;
  #headersDone = false;
  #replacedResponseBody: Buffer | undefined;
  #status = 0;
  #grpcStatus = '-';
  #flags = '';
  #error = '';
  #cluster: UpstreamCluster | undefined;
  #requestCluster: UpstreamCluster | undefined;
  #retrySlot: RetrySlot | undefined;
  #endpoint: UpstreamEndpoint | undefined;
  #lastEndpoint = '-';
  #upstreamHost: UpstreamEndpoint | undefined;
  #attempt: UpstreamAttempt | undefined;
  #attempts = 0;
  #requestStarted = false;
  #retriedRefused = false;
  #holdForStatus = false;
  /** A response held until its gRPC status is known (see the file comment). */
  #held: { headers: HeaderList; endStream: boolean } | undefined;
  #response: H2ResponseWriter | undefined;
  #localBytes = 0;
  #timer: NodeJS.Timeout | undefined;
  #tryTimer: NodeJS.Timeout | undefined;
  #backoffTimer: NodeJS.Timeout | undefined;
  #trace: TraceContext | undefined;
  #requestId = '';
  #recorded = false;
  /** The client got the end of a local reply. */
  #replied = false;

  constructor(
    readonly ctx: L7Context,
    readonly pool: H2UpstreamPool,
    readonly target: L7Target,
    readonly stream: http2.ServerHttp2Stream,
    raw: http2.IncomingHttpHeaders,
  ) {
    this.#method = String(raw[':method'] ?? 'GET');
    this.#path = String(raw[':path'] ?? '/');
    this.#authority = String(raw[':authority'] ?? target.service?.hostname ?? '');
    this.#headers = headerListFrom(raw);
    this.#grpc = (this.#headers.get('content-type') ?? '').startsWith('application/grpc');
    this.#body = new H2RequestBody(stream, this, ctx.limits.maxBufferedBodyBytes);
  }

  // === chain ===

  start(): void {
    const { ctx, target, stream } = this;
    stream.on('error', () => undefined);
    stream.on('close', () => this.#onDownstreamClose());
    const snapshot = ctx.state.current;
    const service = target.service === undefined ? undefined : (snapshot.serviceByName(target.service.key) ?? target.service);
    const port = target.servicePort?.port ?? target.originalDst.port;
    const q = this.#path.indexOf('?');
    const route = routeTableFor(snapshot, service, port).match(this.#method, q === -1 ? this.#path : this.#path.slice(0, q), this.#headers);
    if (route === undefined) return this.reply(localReply(404, L7_ERROR.noRoute, 'NR', 'no route matched'));
    this.#route = route;
    if (route.requestHeaders !== undefined) applyHeaderOps(this.#headers, route.requestHeaders);
    const filters = ctx.filtersFor(snapshot, { ...target, service });
    // A request id costs a random draw; only filters and the access log read it.
    if (ctx.accessLog.enabled || filters.length > 0) this.#requestId = this.#headers.get('x-request-id') ?? newRequestId();
    if (filters.length > 0) this.#startFilters(filters, service?.hostname);
    if (this.#streams.length === 0) return this.#afterRequestHeaders();
    this.settle(runRequestHeaders(this.#streams, this.#headers, !this.#body.present), () => this.#afterRequestHeaders());
  }

  #startFilters(filters: ReturnType<L7Context['filtersFor']>, destinationService: string | undefined): void {
    const { target } = this;
    const info = {
      method: this.#method,
      path: this.#path,
      authority: this.#authority,
      protocol: 'HTTP/2',
      sourceAddress: target.source.address,
      sourcePort: target.source.port,
      destinationAddress: target.originalDst.address,
      destinationPort: target.originalDst.port,
      upstreamHost: () => this.#upstreamHost,
      sourceIdentity: target.sourceIdentity,
      destinationService,
      requestId: this.#requestId,
    };
    const access = {
      replaceRequestBody: (b: Buffer): void => void (this.#body.final = b),
      replaceResponseBody: (b: Buffer): void => void (this.#replacedResponseBody = b),
      // Envoy semantics for :method/:path/:authority edits; the authority leaves as the upstream :authority.
      setRequestLine: (method: string, path: string, authority: string): void => {
        this.#method = method;
        this.#path = path;
        this.#authority = authority;
        this.#rematchRoute = true;
      },
      clearRouteCache: (): void => void (this.#rematchRoute = true),
      setResponseStatus: (status: number): string | undefined => this.#setResponseStatus(status),
    };
    let whole = false;
    let chunkHooks = false;
    let trailerHooks = false;
    for (const f of filters) {
      const s = f.start(info, access);
      if (s === undefined) continue;
      this.#streams.push(s);
      if (s.onRequestBody !== undefined) {
        if (f.bufferRequestBody === true) this.#body.collectWhole();
        else this.#requestChunkHooks = true;
      }
      if (s.onResponseBody !== undefined) {
        if (f.bufferResponseBody === true) whole = true;
        else chunkHooks = true;
      }
      if (s.onRequestTrailers !== undefined) this.#requestTrailerHooks = true;
      if (s.onResponseTrailers !== undefined) trailerHooks = true;
    }
    this.#responseFilters = { streams: this.#streams, whole, chunkHooks, trailerHooks };
  }

  /** Continues with `next` when a filter status is "continue", answers locally otherwise; handles paused (Promise) statuses. */
  settle(status: FilterStatus, next: () => void): void {
    if (status === undefined) return next();
    if (!(status instanceof Promise)) return this.reply(status);
    status.then(
      (r) => {
        if (this.#phase === 'done') return;
        if (r === undefined) next();
        else this.reply(r);
      },
      (err: unknown) => {
        if (this.#phase === 'done') return;
        this.#error = String(weftErrorOf(err)?.code ?? 'filter failed');
        this.reply(localReply(500, L7_ERROR.pluginFailed, 'UAEX', 'a filter failed'));
      },
    );
  }

  #afterRequestHeaders(): void {
    if (this.#phase === 'done') return;
    this.#headersDone = true;
    // A body collected whole goes on once complete (its filters first); a request without one goes straight on.
    if (this.#body.collectingWhole && this.#body.present) {
      if (this.#body.complete) this.onWholeBody();
      return;
    }
    this.#dispatch();
  }

  // === request body (RequestBodyOwner) ===

  currentAttempt(): UpstreamAttempt | undefined {
    return this.#attempt;
  }

  onStreamedChunk(chunk: Buffer, end: boolean): void {
    if (this.#requestChunkHooks) observeBody(this.#streams, onRequestBodyHook, chunk.length === 0 ? [] : [chunk], end);
  }

  onStreamedTrailers(trailers: HeaderList): Promise<void> | undefined {
    if (this.#phase === 'done' || !this.#requestTrailerHooks) return undefined;
    const status = runFilterHook(this.#streams, 0, onRequestTrailersHook, trailers);
    if (status === undefined) return undefined;
    if (!(status instanceof Promise)) return void this.reply(status);
    return new Promise<void>((resolve) => this.settle(status, resolve));
  }

  onWholeBody(): void {
    if (!this.#headersDone || this.#phase !== 'filters') return;
    const body = this.#body.takeWhole();
    const afterBody = (): void => {
      this.#body.final ??= body;
      const t = this.#body.trailers;
      if (t === undefined || !this.#requestTrailerHooks) return this.#dispatch();
      this.settle(runFilterHook(this.#streams, 0, onRequestTrailersHook, t), () => this.#dispatch());
    };
    // Body callbacks are for bodies: an empty one goes on, as Envoy never calls on_request_body for it.
    if (body.length === 0) return afterBody();
    this.settle(runFilterHook(this.#streams, 0, onRequestBodyHook, body, true), afterBody);
  }

  onTooLarge(): void {
    this.reply(localReply(413, L7_ERROR.bodyTooLarge, 'DPE', 'request body exceeds the buffering limit'));
  }

  onDrain(): void {
    this.#body.resume();
  }

  // === router: timeout → retry → load balancing → attempt ===

  #dispatch(): void {
    if (this.#phase === 'done') return;
    const { ctx, target } = this;
    if (this.#rematchRoute && !this.#rematch()) return;
    const route = this.#route!;
    if (route.timeoutMs > 0 && this.#timer === undefined) this.#timer = setTimeout(() => this.#onTimeout(), route.timeoutMs);
    const snapshot = ctx.state.current;
    const service = target.service === undefined ? undefined : (snapshot.serviceByName(target.service.key) ?? target.service);
    const port = target.servicePort?.port ?? target.originalDst.port;
    const backend = RouteTable.pickBackend(route, route.backends.length === 1 ? 0 : Math.random());
    const svc = backend?.service;
    const cluster =
      svc !== undefined ? ctx.clusters.forService(snapshot, svc, backend?.port ?? port, backend?.labels, route.loadBalancer) : ctx.clusters.forAddress(snapshot, target.originalDst.address, target.originalDst.port, target.workload);
    this.#cluster = cluster;
    if (!this.#requestStarted) {
      if (!cluster.tryStartRequest()) return this.reply(localReply(503, L7_ERROR.overflow, 'UO', `upstream ${cluster.name} is overloaded (max requests)`));
      this.#requestStarted = true;
      this.#requestCluster = cluster;
    }
    const hashOn = route.loadBalancer?.hashOn ?? cluster.lbConfig?.hashOn;
    const ep = cluster.pick(Date.now(), hashOn === undefined ? undefined : requestHash(hashOn, (n) => this.#headers.get(n), target.source.address));
    if (ep === undefined) return this.reply(localReply(503, L7_ERROR.noHealthyUpstream, 'UH', `no healthy upstream for ${cluster.name}`));
    this.#endpoint = ep;
    this.#lastEndpoint = ep.key;
    this.#upstreamHost = ep;
    ep.activeRequests++;
    this.#attempts++;
    this.#phase = 'upstream';
    const retry = route.retry;
    this.#holdForStatus = this.#grpc && retry !== undefined && retriesGrpcStatus(retry);
    if (retry?.perTryTimeoutMs !== undefined) this.#tryTimer = setTimeout(() => this.#onTryTimeout(), retry.perTryTimeoutMs);
    const req = this.#attemptRequest(route);
    const appProtocol = (svc ?? service)?.ports.find((p) => p.port === (backend?.port ?? port))?.appProtocol ?? target.servicePort?.appProtocol;
    // gRPC needs trailers end to end, so it always stays on HTTP/2.
    const h2 = this.#grpc || appProtocol === 'http2' || appProtocol === 'grpc';
    const identity = target.upstreamIdentity;
    this.#attempt = h2 ? startH2Attempt(this.pool, ep.address, ep.port, identity, cluster.connectTimeoutMs, req, this) : startHttp1Attempt(this.pool.http1(identity), ep.address, ep.port, req, this);
    this.#body.feed(this.#attempt);
  }

  /** Matches the route again after filters edited the request; false when none matches (answered 404). */
  #rematch(): boolean {
    this.#rematchRoute = false;
    const snapshot = this.ctx.state.current;
    const { target } = this;
    const service = target.service === undefined ? undefined : (snapshot.serviceByName(target.service.key) ?? target.service);
    const q = this.#path.indexOf('?');
    const route = routeTableFor(snapshot, service, target.servicePort?.port ?? target.originalDst.port).match(this.#method, q === -1 ? this.#path : this.#path.slice(0, q), this.#headers);
    if (route === undefined) {
      this.reply(localReply(404, L7_ERROR.noRoute, 'NR', 'no route matched after a filter edited the request'));
      return false;
    }
    if (route !== this.#route && route.requestHeaders !== undefined) applyHeaderOps(this.#headers, route.requestHeaders);
    this.#route = route;
    return true;
  }

  /** The request as it leaves: trace context, rewrites, attempt count, and a content-length matching a replaced body. */
  #attemptRequest(route: CompiledRoute): AttemptRequest {
    const headers = this.#headers;
    if (this.#trace === undefined) {
      this.#trace = continueTrace(headers.get('traceparent'));
      headers.set('traceparent', this.#trace.header);
      const final = this.#body.final;
      if (final !== undefined && headers.has('content-length')) headers.set('content-length', String(final.length));
    }
    // Envoy's x-envoy-attempt-count (Istio turns it on): lets the upstream tell a retry from a first try.
    if (route.retry !== undefined) headers.set('x-envoy-attempt-count', String(this.#attempts));
    let path = this.#path;
    if (route.rewriteUri !== undefined || route.rewriteRegex !== undefined) {
      const q = path.indexOf('?');
      path = rewritePath(route, q === -1 ? path : path.slice(0, q), path);
    }
    return { method: this.#method, path, authority: route.rewriteAuthority ?? this.#authority, headers, hasBody: this.#body.present };
  }

  // === upstream answer (AttemptSink) ===

  onResponse(status: number, headers: HeaderList, endStream: boolean): void {
    if (this.#phase !== 'upstream') return;
    this.#clearTryTimer();
    this.#status = status;
    const gs = headers.get('grpc-status');
    if (gs !== undefined) this.#grpcStatus = gs;
    this.#cluster!.report(this.#endpoint!, status >= 500 ? (status >= 502 && status <= 504 ? 'gateway' : '5xx') : 'success', Date.now());
    const verdict = this.#retryVerdict();
    if (verdict === 'retry') return this.#retryAfterAnswer(status);
    if (verdict === 'exhausted') this.#flags = 'URX';
    // A gRPC status in trailers decides a retry too: hold the headers until the first message or the trailers.
    if (!endStream && gs === undefined && this.#holdForStatus && this.#attempts <= this.#route!.retry!.attempts && this.#canReplay()) {
      this.#held = { headers, endStream };
      return;
    }
    this.#commit(headers, endStream);
  }

  onData(chunk: Buffer): void {
    if (this.#held !== undefined) this.#commit(this.#held.headers, this.#held.endStream);
    if (this.#phase === 'response') this.#response!.data(chunk);
  }

  onTrailers(trailers: HeaderList): void {
    const gs = trailers.get('grpc-status');
    if (gs !== undefined) this.#grpcStatus = gs;
    const held = this.#held;
    if (held !== undefined) {
      const verdict = this.#retryVerdict();
      if (verdict === 'retry') return this.#retryAfterAnswer(this.#status);
      if (verdict === 'exhausted') this.#flags = 'URX';
      this.#commit(held.headers, held.endStream);
    }
    if (this.#phase === 'response') this.#response!.trailers = trailers;
  }

  onEnd(): void {
    if (this.#held !== undefined) this.#commit(this.#held.headers, this.#held.endStream);
    if (this.#phase !== 'response') return;
    this.#endAttempt('success');
    this.#response!.end();
  }

  onFailure(kind: Exclude<AttemptFailure, 'timeout'>, message: string, rstCode: number): void {
    if (this.#phase === 'upstream') {
      this.#clearTryTimer();
      this.#held = undefined;
      this.#attempt = undefined;
      this.#endAttempt('local-failure');
      return this.#attemptFailed(kind, message);
    }
    if (this.#phase !== 'response') return;
    this.#attempt = undefined;
    this.#endAttempt('local-failure');
    this.#flags ||= 'UC';
    if (this.#response?.headSent !== true) return this.reply(localReply(503, L7_ERROR.upstreamReset, 'UC', `upstream reset the stream: ${message}`));
    // Mid-body loss: the client already has a status; only resetting the stream is honest.
    this.#phase = 'done';
    this.#body.stop();
    if (!this.stream.destroyed) this.stream.close(rstCode === 0 ? NGHTTP2_INTERNAL_ERROR : rstCode);
  }

  /** Forwards this attempt's answer: route header operations, then the response filters and the client. */
  #commit(headers: HeaderList, endStream: boolean): void {
    this.#held = undefined;
    this.#phase = 'response';
    const ops = this.#route?.responseHeaders;
    if (ops !== undefined) applyHeaderOps(headers, ops);
    const wantsTrailers = this.#grpc || this.#headers.get('te') === 'trailers';
    this.#response = new H2ResponseWriter(this.stream, this, this.#responseFilters, this.#status, headers, endStream, wantsTrailers, this.ctx.limits.maxBufferedBodyBytes);
    this.#response.start();
  }

  /** A filter's :status edit (Envoy semantics, see BodyAccess.setResponseStatus). */
  #setResponseStatus(status: number): string | undefined {
    const response = this.#response;
    if (response === undefined || response.headSent) return 'the response head already went out';
    if ((status === 204 || status === 304) && !response.endStream) return `a ${status} response cannot carry the upstream's body`;
    response.status = status;
    this.#status = status;
    return undefined;
  }

  replacedResponseBody(): Buffer | undefined {
    return this.#replacedResponseBody;
  }

  // === retries, timeouts, failures ===

  #retryVerdict(): 'retry' | 'exhausted' | 'no' {
    return answerVerdict(this.#route?.retry, this.#status, this.#grpcStatus, this.#attempts, this.#canReplay());
  }

  /** Never once response headers reached the client, nor without the whole request at hand to send again. */
  #canReplay(): boolean {
    return this.#response?.headSent !== true && this.#body.replayable;
  }

  #retryAfterAnswer(status: number): void {
    this.#held = undefined;
    this.#cancelAttempt();
    this.#endAttempt(null);
    this.#retryOrFail(localReply(status, L7_ERROR.upstreamReset, 'URX', 'upstream retries exhausted'));
  }

  #attemptFailed(kind: AttemptFailure, message: string): void {
    const reply =
      kind === 'connect-failure'
        ? localReply(503, L7_ERROR.upstreamConnect, 'UF', `upstream connect error: ${message}`)
        : kind === 'timeout'
          ? localReply(504, L7_ERROR.upstreamTimeout, 'UT', 'upstream per-try timeout')
          : localReply(503, L7_ERROR.upstreamReset, 'UC', `upstream reset: ${message}`);
    // A refused stream was never processed (RFC 9113 §8.7): one free retry, as for HTTP/1's stale keep-alive connection.
    if (kind === 'refused-stream' && !this.#retriedRefused && this.#canReplay()) {
      this.#retriedRefused = true;
      this.#attempts--;
      return this.#retry(0);
    }
    const r = this.#route?.retry;
    // A reset after the upstream had the body may have had effects: only idempotent or body-less requests go again.
    const replayable = kind !== 'reset' || IDEMPOTENT_METHODS.has(this.#method) || !this.#body.sent;
    if (r !== undefined && isRetriableFailure(r, kind) && this.#attempts <= r.attempts && this.#canReplay() && replayable) return this.#retryOrFail(reply);
    this.#flags = reply.flag ?? '';
    this.reply(reply);
  }

  #retryOrFail(reply: LocalReply): void {
    const r = this.#route!.retry!;
    if (this.#attempts > r.attempts) {
      this.#flags = 'URX';
      return this.reply({ ...reply, flag: 'URX' });
    }
    if (!(this.#retrySlot ??= new RetrySlot()).take(this.#cluster!, r)) {
      this.#flags = 'UO';
      return this.reply(localReply(503, L7_ERROR.overflow, 'UO', `retry budget of ${this.#cluster!.name} exhausted`));
    }
    this.#retry(backoffMs(r, this.#attempts));
  }

  #retry(delayMs: number): void {
    this.#phase = 'upstream';
    this.#status = 0;
    this.#grpcStatus = '-';
    const go = (): void => {
      this.#backoffTimer = undefined;
      if (this.#phase !== 'done') this.#dispatch();
    };
    if (delayMs === 0) go();
    else this.#backoffTimer = setTimeout(go, delayMs);
  }

  #onTimeout(): void {
    this.#timer = undefined;
    if (this.#phase === 'done') return;
    this.#flags = 'UT';
    if (this.#response?.headSent === true) {
      this.#phase = 'done';
      this.#body.stop();
      this.#cancelAttempt();
      this.#endAttempt(null);
      this.stream.close(NGHTTP2_CANCEL);
      return;
    }
    this.reply(localReply(504, L7_ERROR.upstreamTimeout, 'UT', 'upstream request timeout'));
  }

  #onTryTimeout(): void {
    this.#tryTimer = undefined;
    if (this.#phase !== 'upstream' || this.#attempt === undefined) return;
    this.#held = undefined;
    this.#cancelAttempt();
    this.#endAttempt('local-failure');
    this.#attemptFailed('timeout', 'per-try timeout');
  }

  #clearTryTimer(): void {
    if (this.#tryTimer !== undefined) clearTimeout(this.#tryTimer);
    this.#tryTimer = undefined;
  }

  #cancelAttempt(): void {
    const a = this.#attempt;
    this.#attempt = undefined;
    a?.cancel();
  }

  /** Ends the accounting of the current attempt on its endpoint. */
  #endAttempt(outcome: 'success' | 'local-failure' | null): void {
    const ep = this.#endpoint;
    if (ep === undefined) return;
    ep.activeRequests--;
    if (outcome === 'local-failure') this.#cluster?.report(ep, 'local-failure', Date.now());
    this.#endpoint = undefined;
  }

  // === completion ===

  /** Answers the client with a local reply (or resets the stream once a response is under way). */
  reply(reply: LocalReply): void {
    const { stream } = this;
    if (this.#phase === 'done') return;
    this.#phase = 'done';
    this.#body.stop();
    this.#cancelAttempt();
    this.#endAttempt(null);
    this.#flags ||= reply.flag ?? '';
    if (this.#error === '') this.#error = reply.code ?? '';
    this.#status = reply.status;
    if (stream.destroyed) return;
    if (this.#response?.headSent === true || reply.reset === true) {
      stream.close(NGHTTP2_INTERNAL_ERROR);
      return;
    }
    const headers: http2.OutgoingHttpHeaders = {};
    for (const [n, v] of reply.headers ?? []) headers[n.toLowerCase()] = v;
    if (reply.code !== undefined) headers['x-weft-error'] = reply.code;
    this.#replied = true;
    if (this.#grpc) {
      // gRPC clients read errors from a trailers-only response, never from the HTTP status.
      this.#grpcStatus = String(grpcStatusFor(reply.status));
      stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': this.#grpcStatus, 'grpc-message': encodeURIComponent(String(reply.body ?? '').trim()), ...headers }, { endStream: true });
      return;
    }
    const body = reply.body === undefined ? '' : reply.body;
    stream.respond({ ':status': reply.status, 'content-type': 'text/plain; charset=utf-8', ...headers });
    this.#localBytes += Buffer.byteLength(body);
    stream.end(body);
  }

  #onDownstreamClose(): void {
    if (this.#recorded) return;
    // The client left (reset or closed) before its answer was complete.
    if (!this.#replied && this.#response?.ended !== true) this.#flags ||= 'DC';
    this.#phase = 'done';
    this.#body.stop();
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    if (this.#backoffTimer !== undefined) clearTimeout(this.#backoffTimer);
    this.#clearTryTimer();
    this.#cancelAttempt();
    this.#endAttempt(null);
    this.#recorded = true;
    if (this.#requestStarted) this.#requestCluster?.endRequest();
    this.#retrySlot?.release();
    if (this.#route?.mirror !== undefined) this.#mirror(this.#route.mirror);
    this.#record();
  }

  /** Sends the shadow copy when the sampled percentage says so and the whole body is still at hand. */
  #mirror(m: NonNullable<CompiledRoute['mirror']>): void {
    if (m.percent < 100 && Math.random() * 100 >= m.percent) return;
    const body = this.#body.copy();
    const b = m.backend;
    if (body === null || b.service === undefined) return;
    const { ctx, target } = this;
    const port = b.port ?? target.servicePort?.port ?? target.originalDst.port;
    const cluster = ctx.clusters.forService(ctx.state.current, b.service, port, b.labels, undefined);
    const appProtocol = b.service.ports.find((p) => p.port === port)?.appProtocol;
    const http2Mirror = this.#grpc || appProtocol === 'http2' || appProtocol === 'grpc';
    ctx.mirror.send(cluster, { method: this.#method, target: this.#path, authority: this.#authority, headers: this.#headers.flat, body, http2: http2Mirror, ...(target.upstreamIdentity === undefined ? {} : { identity: target.upstreamIdentity }) });
  }

  #record(): void {
    const { ctx, target } = this;
    const flags = this.#flags === '' ? '-' : this.#flags;
    const duration = performance.now() - this.#start;
    const sent = this.#localBytes + (this.#response?.bytes ?? 0);
    ctx.telemetry.record(peerFor(ctx, target, this.#grpc), this.#status, flags, this.#grpcStatus, duration, this.#body.bytes, sent);
    for (const s of this.#streams) s.onDone?.(this.#status, flags);
    if (!ctx.accessLog.enabled) return;
    ctx.accessLog.write({
      start_time: new Date(Date.now() - duration).toISOString(),
      method: this.#method,
      path: this.#path,
      protocol: 'HTTP/2',
      authority: this.#authority,
      response_code: this.#status,
      response_flags: flags,
      grpc_status: this.#grpcStatus,
      bytes_received: this.#body.bytes,
      bytes_sent: sent,
      duration_ms: Math.round(duration * 1000) / 1000,
      upstream_host: this.#lastEndpoint,
      upstream_cluster: this.#cluster?.name ?? '-',
      upstream_attempts: this.#attempts,
      route_name: this.#route?.name ?? '-',
      request_id: this.#requestId === '' ? '-' : this.#requestId,
      ...exchangeContextFields(target, this.#trace, this.#headers, this.#error),
    });
  }
}

/** Peer labels per connection target and protocol, computed once (they feed the telemetry series cache). */
const peers = new WeakMap<L7Target, { http?: PeerLabels; grpc?: PeerLabels }>();
function peerFor(ctx: L7Context, target: L7Target, grpc: boolean): PeerLabels {
  let entry = peers.get(target);
  if (entry === undefined) peers.set(target, (entry = {}));
  const key = grpc ? 'grpc' : 'http';
  return (entry[key] ??= peerLabels({ source: ctx.state.current.workloadByIp(target.source.address), sourcePrincipal: target.sourceIdentity, service: target.service, destination: target.workload, protocol: key }));
}
