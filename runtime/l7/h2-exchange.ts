/**
 * One h2c or gRPC stream through the chain, with HTTP/1's behaviour: route → filters (headers; bodies buffered or
 * streamed, bounded by l7.maxBufferedBodyBytes; trailers) → retries with budget → timeouts → load balancing → an
 * upstream attempt (h2c, or HTTP/1.1 for HTTP/1 services), mirroring, and one telemetry record and access-log line.
 *
 * Invariants: a retry happens only before response headers went to the client, and only when the whole request is
 * at hand again (a replayable body); a non-idempotent request whose body reached a reset upstream is never replayed.
 * A gRPC response whose status may still be retried is held until its first message or its trailers.
 */
import http2 from 'node:http2';
import type { HeaderOpsConfig } from '../config/l7-config-schema.js';
import { weftErrorOf } from '../errors.js';
import type { HeaderList } from './header-list.js';
import { addOutgoing, grpcStatusFor, headerListFrom } from './h2-headers.js';
import { startH2Attempt, startHttp1Attempt, type AttemptRequest, type AttemptSink, type UpstreamAttempt } from './h2-upstream-attempt.js';
import type { H2UpstreamPool } from './h2-upstream-pool.js';
import { peerLabels, type PeerLabels } from './http-telemetry.js';
import type { L7Context, L7Target } from './l7-context.js';
import { onRequestBodyHook, onRequestTrailersHook, onResponseBodyHook, onResponseTrailersHook, runFilterHook, runRequestHeaders, runResponseHeaders, type FilterStatus, type L7FilterStream, type LocalReply } from './l7-filter.js';
import { requestHash } from './load-balancer.js';
import { L7_ERROR, localReply } from './local-reply.js';
import { applyHeaderOps, rewritePath } from './route-actions.js';
import { RouteTable, routeTableFor, type CompiledRoute } from './route-table.js';
import { answerVerdict, backoffMs, IDEMPOTENT_METHODS, isRetriableFailure, RETRY_BUFFER_BYTES, retriesGrpcStatus, RetrySlot, type AttemptFailure } from './retry-policy.js';
import { continueTrace, newRequestId, type TraceContext } from './traceparent.js';
import type { UpstreamCluster, UpstreamEndpoint } from './upstream-cluster.js';

const { NGHTTP2_CANCEL, NGHTTP2_INTERNAL_ERROR } = http2.constants;
/** Body bytes that may wait (for filters, a connection, a paused filter) before the sender is paused; HTTP/2 flow control does the rest. */
const QUEUE_BYTES = 64 * 1024;

/** 'upstream' covers connecting, waiting for and holding a response, and backoff; 'response' is committed to one. */
type Phase = 'filters' | 'upstream' | 'response' | 'done';

/** Swallows the rejection of an observe-only filter call (streamed bodies cannot pause or answer). */
function observe(status: FilterStatus): void {
  if (status instanceof Promise) status.catch(() => undefined);
}

function concat(parts: Buffer[], total: number): Buffer {
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts, total);
}

export class H2Exchange implements AttemptSink {
  readonly #start = performance.now();
  readonly #headers: HeaderList;
  readonly #method: string;
  readonly #path: string;
  readonly #authority: string;
  readonly #grpc: boolean;
  #phase: Phase = 'filters';
  #route: CompiledRoute | undefined;
  #streams: L7FilterStream[] = [];
  #status = 0;
  #grpcStatus = '-';
  #flags = '';
  #error = '';
  #cluster: UpstreamCluster | undefined;
  #requestCluster: UpstreamCluster | undefined;
  readonly #retrySlot = new RetrySlot();
  #endpoint: UpstreamEndpoint | undefined;
  #lastEndpoint = '-';
  #attempt: UpstreamAttempt | undefined;
  #attempts = 0;
  #requestStarted = false;
  #retriedRefused = false;
  /** An attempt already consumed the queued body: the next one replays it. */
  #replay = false;
  #holdForStatus = false;
  #timer: NodeJS.Timeout | undefined;
  #tryTimer: NodeJS.Timeout | undefined;
  #backoffTimer: NodeJS.Timeout | undefined;
  #trace: TraceContext | undefined;
  #requestId = '';
  #recorded = false;
  #downEnded = false;

  // Request (downstream → upstream).
  #reqComplete: boolean;
  readonly #hasBody: boolean;
  #reqBytes = 0;
  #reqQueue: Buffer[] = [];
  #reqQueueBytes = 0;
  #reqRetained: Buffer[] | null = [];
  #reqRetainedBytes = 0;
  #reqTrailers: HeaderList | undefined;
  #reqTrailersReady: Promise<void> | undefined;
  #downPaused = false;
  #bufferRequest = false;
  #requestBodyHooks = false;
  #requestTrailerHooks = false;
  #headersDone = false;
  #replacedRequestBody: Buffer | undefined;

  // Response (upstream → downstream).
  #resHeaders: HeaderList | undefined;
  #resEndStream = false;
  #holding = false;
  #resMode: 'queue' | 'buffer' | 'stream' = 'queue';
  #resQueue: Buffer[] = [];
  #resQueueBytes = 0;
  #resEnded = false;
  #resTrailers: HeaderList | undefined;
  #upPaused = false;
  #headSent = false;
  #resBytes = 0;
  #bufferResponse = false;
  #responseBodyHooks = false;
  #responseTrailerHooks = false;
  #replacedResponseBody: Buffer | undefined;

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
    this.#hasBody = !stream.endAfterHeaders;
    this.#reqComplete = !this.#hasBody;
  }

  // === chain ===

  start(): void {
    const { ctx, target, stream } = this;
    stream.on('error', () => undefined);
    stream.on('close', () => this.#onDownstreamClose());
    const snapshot = ctx.state.current;
    const service = target.service === undefined ? undefined : (snapshot.serviceByName(target.service.key) ?? target.service);
    const port = target.servicePort?.port ?? target.originalDst.port;
    if (this.#hasBody) {
      stream.on('data', (c: Buffer) => this.#onRequestData(c));
      stream.on('trailers', (t: http2.IncomingHttpHeaders) => this.#onRequestTrailers(t));
      stream.on('end', () => this.#onRequestEnd());
    }
    const q = this.#path.indexOf('?');
    const route = routeTableFor(snapshot, service, port).match(this.#method, q === -1 ? this.#path : this.#path.slice(0, q), this.#headers);
    if (route === undefined) return this.#reply(localReply(404, L7_ERROR.noRoute, 'NR', 'no route matched'));
    this.#route = route;
    if (route.requestHeaders !== undefined) applyHeaderOps(this.#headers, route.requestHeaders);
    this.#requestId = this.#headers.get('x-request-id') ?? newRequestId();
    const filters = ctx.filtersFor(snapshot, { ...target, service });
    if (filters.length > 0) {
      const info = {
        method: this.#method,
        path: this.#path,
        authority: this.#authority,
        protocol: 'HTTP/2',
        sourceAddress: target.source.address,
        sourcePort: target.source.port,
        destinationAddress: target.originalDst.address,
        destinationPort: target.originalDst.port,
        sourceIdentity: target.sourceIdentity,
        destinationService: service?.hostname,
        requestId: this.#requestId,
      };
      const access = {
        replaceRequestBody: (b: Buffer): void => void (this.#replacedRequestBody = b),
        replaceResponseBody: (b: Buffer): void => void (this.#replacedResponseBody = b),
      };
      for (const f of filters) {
        const s = f.start(info, access);
        if (s === undefined) continue;
        this.#streams.push(s);
        if (s.onRequestBody !== undefined) {
          if (f.bufferRequestBody === true) this.#bufferRequest = true;
          else this.#requestBodyHooks = true;
        }
        if (s.onResponseBody !== undefined) {
          if (f.bufferResponseBody === true) this.#bufferResponse = true;
          else this.#responseBodyHooks = true;
        }
        if (s.onRequestTrailers !== undefined) this.#requestTrailerHooks = true;
        if (s.onResponseTrailers !== undefined) this.#responseTrailerHooks = true;
      }
    }
    if (this.#streams.length === 0) return this.#afterRequestHeaders();
    this.#settle(runRequestHeaders(this.#streams, this.#headers, !this.#hasBody), () => this.#afterRequestHeaders());
  }

  /** Continues with `next` when a filter status is "continue", answers locally otherwise; handles paused (Promise) statuses. */
  #settle(status: FilterStatus, next: () => void): void {
    if (status === undefined) return next();
    if (!(status instanceof Promise)) return this.#reply(status);
    status.then(
      (r) => {
        if (this.#phase === 'done') return;
        if (r === undefined) next();
        else this.#reply(r);
      },
      (err: unknown) => {
        if (this.#phase === 'done') return;
        this.#error = String(weftErrorOf(err)?.code ?? 'filter failed');
        this.#reply(localReply(500, L7_ERROR.pluginFailed, 'UAEX', 'a filter failed'));
      },
    );
  }

  #afterRequestHeaders(): void {
    if (this.#phase === 'done') return;
    this.#headersDone = true;
    // A buffered body goes on once complete (its callbacks first); a request without one goes straight on.
    if (this.#bufferRequest && this.#hasBody) {
      if (this.#reqComplete) this.#runBufferedRequestBody();
      return;
    }
    this.#dispatch();
  }

  // === request body ===

  #onRequestData(c: Buffer): void {
    this.#reqBytes += c.length;
    if (this.#phase === 'done') return;
    if (this.#bufferRequest) {
      if (this.#reqBytes > this.ctx.limits.maxBufferedBodyBytes) return this.#reply(localReply(413, L7_ERROR.bodyTooLarge, 'DPE', 'request body exceeds the buffering limit'));
      this.#reqQueue.push(c);
      this.#reqQueueBytes += c.length;
      return;
    }
    if (this.#reqRetained !== null) {
      this.#reqRetainedBytes += c.length;
      if (this.#reqRetainedBytes > RETRY_BUFFER_BYTES) this.#reqRetained = null;
      else this.#reqRetained.push(c);
    }
    if (this.#requestBodyHooks) for (const s of this.#streams) if (s.onRequestBody !== undefined) observe(s.onRequestBody(c, false));
    const a = this.#attempt;
    if (a !== undefined && this.#phase !== 'filters') {
      if (!a.write(c)) this.#pauseDownstream();
      return;
    }
    this.#reqQueue.push(c);
    this.#reqQueueBytes += c.length;
    if (this.#reqQueueBytes > QUEUE_BYTES) this.#pauseDownstream();
  }

  #onRequestTrailers(raw: http2.IncomingHttpHeaders): void {
    const list = headerListFrom(raw);
    this.#reqTrailers = list;
    // Buffered bodies run their trailers after the body callbacks; streamed ones run them now and hold the end.
    if (this.#phase === 'done' || this.#bufferRequest || !this.#requestTrailerHooks) return;
    const status = runFilterHook(this.#streams, 0, onRequestTrailersHook, list);
    if (status === undefined) return;
    if (!(status instanceof Promise)) return this.#reply(status);
    this.#reqTrailersReady = new Promise<void>((resolve) => this.#settle(status, resolve));
  }

  #onRequestEnd(): void {
    this.#reqComplete = true;
    if (this.#phase === 'done') return;
    if (this.#bufferRequest) {
      if (this.#headersDone && this.#phase === 'filters') this.#runBufferedRequestBody();
      return;
    }
    if (this.#attempt !== undefined && this.#phase !== 'filters') this.#endUpstreamRequest(this.#attempt);
  }

  #runBufferedRequestBody(): void {
    const body = this.#reqQueueBytes === 0 ? Buffer.alloc(0) : concat(this.#reqQueue, this.#reqQueueBytes);
    this.#reqQueue = [];
    this.#reqQueueBytes = 0;
    this.#reqRetained = null;
    const afterBody = (): void => {
      this.#replacedRequestBody ??= body;
      const t = this.#reqTrailers;
      if (t === undefined || !this.#requestTrailerHooks) return this.#dispatch();
      this.#settle(runFilterHook(this.#streams, 0, onRequestTrailersHook, t), () => this.#dispatch());
    };
    // Body callbacks are for bodies: an empty one goes on, as Envoy never calls on_request_body for it.
    if (body.length === 0) return afterBody();
    this.#settle(runFilterHook(this.#streams, 0, onRequestBodyHook, body, true), afterBody);
  }

  #pauseDownstream(): void {
    if (this.#downPaused) return;
    this.#downPaused = true;
    this.stream.pause();
  }

  onDrain(): void {
    if (!this.#downPaused) return;
    this.#downPaused = false;
    this.stream.resume();
  }

  /** Ends the attempt's request once the client's trailers (if a filter holds them) are through. */
  #endUpstreamRequest(a: UpstreamAttempt): void {
    const ready = this.#reqTrailersReady;
    if (ready === undefined) return a.end(this.#reqTrailers);
    void ready.then(() => {
      if (this.#attempt === a && this.#phase !== 'done') a.end(this.#reqTrailers);
    });
  }

  // === router: timeout → retry → load balancing → attempt ===

  #dispatch(): void {
    if (this.#phase === 'done') return;
    const { ctx, target } = this;
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
      if (!cluster.tryStartRequest()) return this.#reply(localReply(503, L7_ERROR.overflow, 'UO', `upstream ${cluster.name} is overloaded (max requests)`));
      this.#requestStarted = true;
      this.#requestCluster = cluster;
    }
    const hashOn = route.loadBalancer?.hashOn ?? cluster.lbConfig?.hashOn;
    const ep = cluster.pick(Date.now(), hashOn === undefined ? undefined : requestHash(hashOn, (n) => this.#headers.get(n), target.source.address));
    if (ep === undefined) return this.#reply(localReply(503, L7_ERROR.noHealthyUpstream, 'UH', `no healthy upstream for ${cluster.name}`));
    this.#endpoint = ep;
    this.#lastEndpoint = ep.key;
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
    const a = h2 ? startH2Attempt(this.pool, ep.address, ep.port, cluster.connectTimeoutMs, req, this) : startHttp1Attempt(this.pool.http1, ep.address, ep.port, req, this);
    this.#attempt = a;
    const replaced = this.#replacedRequestBody;
    if (replaced !== undefined) {
      if (replaced.length > 0) a.write(replaced);
      return this.#endUpstreamRequest(a);
    }
    // A later attempt replays the whole body from the retained copy (what reached earlier attempts is gone).
    const parts = this.#replay ? (this.#reqRetained ?? []) : this.#reqQueue;
    this.#replay = true;
    for (const c of parts) a.write(c);
    this.#reqQueue = [];
    this.#reqQueueBytes = 0;
    if (this.#reqComplete) {
      if (this.#hasBody) this.#endUpstreamRequest(a);
    } else this.onDrain();
  }

  /** The request as it leaves: trace context, rewrites, attempt count, and a content-length matching a replaced body. */
  #attemptRequest(route: CompiledRoute): AttemptRequest {
    const headers = this.#headers;
    if (this.#trace === undefined) {
      this.#trace = continueTrace(headers.get('traceparent'));
      headers.set('traceparent', this.#trace.header);
      if (this.#replacedRequestBody !== undefined && headers.has('content-length')) headers.set('content-length', String(this.#replacedRequestBody.length));
    }
    // Envoy's x-envoy-attempt-count (Istio turns it on): lets the upstream tell a retry from a first try.
    if (route.retry !== undefined) headers.set('x-envoy-attempt-count', String(this.#attempts));
    let path = this.#path;
    if (route.rewriteUri !== undefined || route.rewriteRegex !== undefined) {
      const q = path.indexOf('?');
      path = rewritePath(route, q === -1 ? path : path.slice(0, q), path);
    }
    return { method: this.#method, path, authority: route.rewriteAuthority ?? this.#authority, headers, hasBody: this.#hasBody };
  }

  // === response (AttemptSink) ===

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
    this.#resHeaders = headers;
    this.#resEndStream = endStream;
    // A gRPC status in trailers decides a retry too: hold the headers until the first message or the trailers.
    if (!endStream && gs === undefined && this.#holdForStatus && this.#canRetry(this.#route!.retry!.attempts)) {
      this.#holding = true;
      return;
    }
    this.#commit();
  }

  onData(chunk: Buffer): void {
    if (this.#holding) {
      this.#holding = false;
      this.#commit();
    }
    if (this.#phase !== 'response') return;
    if (this.#resMode === 'stream') return this.#writeDown(chunk);
    this.#resQueue.push(chunk);
    this.#resQueueBytes += chunk.length;
    if (this.#resMode === 'buffer') {
      if (this.#resQueueBytes > this.ctx.limits.maxBufferedBodyBytes) this.#responseTooLarge();
    } else if (this.#resQueueBytes > QUEUE_BYTES) this.#pauseUpstream();
  }

  onTrailers(trailers: HeaderList): void {
    const gs = trailers.get('grpc-status');
    if (gs !== undefined) this.#grpcStatus = gs;
    this.#resTrailers = trailers;
    if (!this.#holding) return;
    this.#holding = false;
    const verdict = this.#retryVerdict();
    if (verdict === 'retry') return this.#retryAfterAnswer(this.#status);
    if (verdict === 'exhausted') this.#flags = 'URX';
    this.#commit();
  }

  onEnd(): void {
    if (this.#holding) {
      this.#holding = false;
      this.#commit();
    }
    if (this.#phase !== 'response') return;
    this.#resEnded = true;
    this.#endAttempt('success');
    if (this.#resMode === 'stream') this.#endResponse();
    else if (this.#resMode === 'buffer') this.#runBufferedResponseBody();
  }

  onFailure(kind: Exclude<AttemptFailure, 'timeout'>, message: string, rstCode: number): void {
    if (this.#phase === 'upstream') {
      this.#clearTryTimer();
      this.#holding = false;
      this.#attempt = undefined;
      this.#endAttempt('local-failure');
      return this.#attemptFailed(kind, message);
    }
    if (this.#phase !== 'response') return;
    this.#attempt = undefined;
    this.#endAttempt('local-failure');
    this.#flags ||= 'UC';
    if (!this.#headSent) return this.#reply(localReply(503, L7_ERROR.upstreamReset, 'UC', `upstream reset the stream: ${message}`));
    // Mid-body loss: the client already has a status; only resetting the stream is honest.
    this.#phase = 'done';
    if (!this.stream.destroyed) this.stream.close(rstCode === 0 ? NGHTTP2_INTERNAL_ERROR : rstCode);
  }

  /** Forwards this attempt's answer: route header operations, then the response filters. */
  #commit(): void {
    this.#phase = 'response';
    this.#resMode = 'queue';
    const headers = this.#resHeaders!;
    const ops: HeaderOpsConfig | undefined = this.#route?.responseHeaders;
    if (ops !== undefined) applyHeaderOps(headers, ops);
    if (this.#streams.length === 0) return this.#afterResponseHeaders();
    const status = runResponseHeaders(this.#streams, this.#status, headers, this.#resEndStream);
    // Only a paused filter stops the upstream; the queue bound covers the synchronous case.
    if (status instanceof Promise) this.#pauseUpstream();
    this.#settle(status, () => {
      this.#resumeUpstream();
      this.#afterResponseHeaders();
    });
  }

  #afterResponseHeaders(): void {
    if (this.#phase === 'done') return;
    if (this.#bufferResponse && !this.#resEndStream) {
      this.#resMode = 'buffer';
      this.#resumeUpstream();
      if (this.#resQueueBytes > this.ctx.limits.maxBufferedBodyBytes) return this.#responseTooLarge();
      if (this.#resEnded) this.#runBufferedResponseBody();
      return;
    }
    this.#sendHead(this.#resEndStream);
    this.#resMode = 'stream';
    const queued = this.#resQueue;
    this.#resQueue = [];
    this.#resQueueBytes = 0;
    for (const c of queued) this.#writeDown(c);
    this.#resumeUpstream();
    if (this.#resEnded) this.#endResponse();
  }

  /** Only gRPC-style exchanges carry trailers; waiting for them otherwise would end plain responses with an extra frame. */
  #wantsTrailers(): boolean {
    return this.#grpc || this.#headers.get('te') === 'trailers';
  }

  #sendHead(endStream: boolean): void {
    const { stream } = this;
    if (stream.destroyed) return;
    const out = addOutgoing({ ':status': this.#status }, this.#resHeaders!);
    this.#headSent = true;
    if (endStream) {
      this.#downEnded = true;
      stream.respond(out, { endStream: true });
      return;
    }
    const wantsTrailers = this.#wantsTrailers();
    stream.respond(out, { waitForTrailers: wantsTrailers });
    if (wantsTrailers) {
      stream.once('wantTrailers', () => {
        try {
          stream.sendTrailers(this.#resTrailers === undefined ? {} : addOutgoing({}, this.#resTrailers));
        } catch {
          stream.close(NGHTTP2_INTERNAL_ERROR);
        }
      });
    }
  }

  #writeDown(c: Buffer): void {
    if (c.length === 0) return;
    this.#resBytes += c.length;
    if (this.#responseBodyHooks) for (const s of this.#streams) if (s.onResponseBody !== undefined) observe(s.onResponseBody(c, false));
    if (!this.stream.write(c) && !this.#upPaused) {
      this.#pauseUpstream();
      this.stream.once('drain', () => this.#resumeUpstream());
    }
  }

  /** Everything came from the upstream: trailers through the filters, then the end (and the trailers) to the client. */
  #endResponse(): void {
    const t = this.#resTrailers;
    const end = (): void => {
      if (this.stream.destroyed || this.#downEnded) return;
      this.#downEnded = true;
      this.stream.end();
    };
    if (t === undefined || !this.#responseTrailerHooks) return end();
    this.#settle(runFilterHook(this.#streams, 0, onResponseTrailersHook, t), end);
  }

  #runBufferedResponseBody(): void {
    const body = this.#resQueueBytes === 0 ? Buffer.alloc(0) : concat(this.#resQueue, this.#resQueueBytes);
    this.#resQueue = [];
    this.#resQueueBytes = 0;
    const send = (): void => {
      if (this.#phase === 'done' || this.stream.destroyed) return;
      const final = this.#replacedResponseBody ?? body;
      const headers = this.#resHeaders!;
      if (headers.has('content-length')) headers.set('content-length', String(final.length));
      const t = this.#resTrailers;
      const empty = final.length === 0 && (t === undefined || !this.#wantsTrailers());
      this.#sendHead(empty);
      if (empty) return;
      this.#resBytes += final.length;
      this.#downEnded = true;
      this.stream.end(final);
    };
    const afterBody = (): void => {
      const t = this.#resTrailers;
      if (t === undefined || !this.#responseTrailerHooks) return send();
      this.#settle(runFilterHook(this.#streams, 0, onResponseTrailersHook, t), send);
    };
    // Filters may edit the headers in their body callbacks: they are still unsent, and go out after them.
    if (body.length === 0) return afterBody();
    this.#settle(runFilterHook(this.#streams, 0, onResponseBodyHook, body, true), afterBody);
  }

  #responseTooLarge(): void {
    this.#cancelAttempt();
    this.#endAttempt(null);
    this.#reply(localReply(500, L7_ERROR.bodyTooLarge, 'UPE', 'response body exceeds the buffering limit'));
  }

  #pauseUpstream(): void {
    if (this.#upPaused) return;
    this.#upPaused = true;
    this.#attempt?.pause();
  }

  #resumeUpstream(): void {
    if (!this.#upPaused) return;
    this.#upPaused = false;
    this.#attempt?.resume();
  }

  // === retries, timeouts, failures ===

  #retryVerdict(): 'retry' | 'exhausted' | 'no' {
    return answerVerdict(this.#route?.retry, this.#status, this.#grpcStatus, this.#attempts, this.#canReplay());
  }

  /** Never once response headers reached the client, nor without the whole request at hand to send again. */
  #canReplay(): boolean {
    if (this.#headSent || !this.#reqComplete) return false;
    return this.#reqBytes === 0 || this.#reqRetained !== null || this.#replacedRequestBody !== undefined;
  }

  #canRetry(attempts: number): boolean {
    return this.#attempts <= attempts && this.#canReplay();
  }

  #retryAfterAnswer(status: number): void {
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
    if (kind === 'refused-stream' && !this.#retriedRefused && this.#canRetry(this.#attempts)) {
      this.#retriedRefused = true;
      this.#attempts--;
      return this.#retry(0);
    }
    const r = this.#route?.retry;
    // A reset after the upstream had the body may have had effects: only idempotent or body-less requests go again.
    const bodySent = this.#reqBytes > 0 || (this.#replacedRequestBody?.length ?? 0) > 0;
    const replayable = kind !== 'reset' || IDEMPOTENT_METHODS.has(this.#method) || !bodySent;
    if (r !== undefined && isRetriableFailure(r, kind) && this.#canRetry(r.attempts) && replayable) return this.#retryOrFail(reply);
    this.#flags = reply.flag ?? '';
    this.#reply(reply);
  }

  #retryOrFail(reply: LocalReply): void {
    const r = this.#route!.retry!;
    if (this.#attempts > r.attempts) {
      this.#flags = 'URX';
      return this.#reply({ ...reply, flag: 'URX' });
    }
    if (!this.#retrySlot.take(this.#cluster!, r)) {
      this.#flags = 'UO';
      return this.#reply(localReply(503, L7_ERROR.overflow, 'UO', `retry budget of ${this.#cluster!.name} exhausted`));
    }
    this.#retry(backoffMs(r, this.#attempts));
  }

  #retry(delayMs: number): void {
    this.#phase = 'upstream';
    this.#status = 0;
    this.#grpcStatus = '-';
    this.#resHeaders = undefined;
    this.#resEndStream = false;
    this.#resQueue = [];
    this.#resQueueBytes = 0;
    this.#resTrailers = undefined;
    this.#resEnded = false;
    this.#upPaused = false;
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
    this.#cancelAttempt();
    this.#endAttempt(null);
    this.#flags = 'UT';
    if (this.#headSent) {
      this.#phase = 'done';
      this.stream.close(NGHTTP2_CANCEL);
      return;
    }
    this.#reply(localReply(504, L7_ERROR.upstreamTimeout, 'UT', 'upstream request timeout'));
  }

  #onTryTimeout(): void {
    this.#tryTimer = undefined;
    if (this.#phase !== 'upstream' || this.#attempt === undefined) return;
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

  #reply(reply: LocalReply): void {
    const { stream } = this;
    if (this.#phase === 'done') return;
    this.#phase = 'done';
    this.#cancelAttempt();
    this.#endAttempt(null);
    this.#flags ||= reply.flag ?? '';
    if (this.#error === '') this.#error = reply.code ?? '';
    this.#status = reply.status;
    if (stream.destroyed) return;
    if (this.#headSent || reply.reset === true) {
      stream.close(NGHTTP2_INTERNAL_ERROR);
      return;
    }
    const headers: http2.OutgoingHttpHeaders = {};
    for (const [n, v] of reply.headers ?? []) headers[n.toLowerCase()] = v;
    if (reply.code !== undefined) headers['x-weft-error'] = reply.code;
    this.#headSent = true;
    this.#downEnded = true;
    if (this.#grpc) {
      // gRPC clients read errors from a trailers-only response, never from the HTTP status.
      this.#grpcStatus = String(grpcStatusFor(reply.status));
      stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': this.#grpcStatus, 'grpc-message': encodeURIComponent(String(reply.body ?? '').trim()), ...headers }, { endStream: true });
      return;
    }
    const body = reply.body === undefined ? '' : reply.body;
    stream.respond({ ':status': reply.status, 'content-type': 'text/plain; charset=utf-8', ...headers });
    this.#resBytes += Buffer.byteLength(body);
    stream.end(body);
  }

  #onDownstreamClose(): void {
    if (this.#recorded) return;
    if (!this.#downEnded || (this.stream.rstCode !== undefined && this.stream.rstCode !== 0 && this.#phase !== 'done')) this.#flags ||= 'DC';
    this.#phase = 'done';
    this.#finish();
  }

  #finish(): void {
    if (this.#recorded) return;
    this.#recorded = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    if (this.#backoffTimer !== undefined) clearTimeout(this.#backoffTimer);
    this.#clearTryTimer();
    this.#cancelAttempt();
    this.#endAttempt(null);
    if (this.#requestStarted) this.#requestCluster?.endRequest();
    this.#retrySlot.release();
    if (this.#route?.mirror !== undefined) this.#mirror(this.#route.mirror);
    this.#record();
  }

  /** Sends the shadow copy when the sampled percentage says so and the whole body is still at hand. */
  #mirror(m: NonNullable<CompiledRoute['mirror']>): void {
    if (m.percent < 100 && Math.random() * 100 >= m.percent) return;
    const hasBody = this.#reqBytes > 0;
    if (hasBody && this.#replacedRequestBody === undefined && (this.#reqRetained === null || !this.#reqComplete)) return;
    const b = m.backend;
    if (b.service === undefined) return;
    const { ctx, target } = this;
    const port = b.port ?? target.servicePort?.port ?? target.originalDst.port;
    const cluster = ctx.clusters.forService(ctx.state.current, b.service, port, b.labels, undefined);
    const body = this.#replacedRequestBody ?? (hasBody ? concat(this.#reqRetained!, this.#reqRetainedBytes) : undefined);
    const appProtocol = b.service.ports.find((p) => p.port === port)?.appProtocol;
    const http2Mirror = this.#grpc || appProtocol === 'http2' || appProtocol === 'grpc';
    ctx.mirror.send(cluster, { method: this.#method, target: this.#path, authority: this.#authority, headers: this.#headers.flat, body, http2: http2Mirror });
  }

  #record(): void {
    const { ctx, target } = this;
    const flags = this.#flags === '' ? '-' : this.#flags;
    const duration = performance.now() - this.#start;
    ctx.telemetry.record(peerFor(ctx, target, this.#grpc), this.#status, flags, this.#grpcStatus, duration, this.#reqBytes, this.#resBytes);
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
      bytes_received: this.#reqBytes,
      bytes_sent: this.#resBytes,
      duration_ms: Math.round(duration * 1000) / 1000,
      upstream_host: this.#lastEndpoint,
      upstream_cluster: this.#cluster?.name ?? '-',
      upstream_attempts: this.#attempts,
      route_name: this.#route?.name ?? '-',
      request_id: this.#requestId === '' ? '-' : this.#requestId,
      trace_id: this.#trace?.traceId ?? '-',
      span_id: this.#trace?.spanId ?? '-',
      source_address: `${target.source.address}:${target.source.port}`,
      source_principal: target.sourceIdentity ?? '-',
      destination_service: target.service?.hostname ?? '-',
      user_agent: this.#headers.get('user-agent') ?? '-',
      error: this.#error === '' ? '-' : this.#error,
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
