/**
 * One HTTP/1.x request through the chain: route match → filters (authorization, plugins) → retry → timeout → load
 * balancing → pooled upstream connection, with the response streamed back and one telemetry record and access-log
 * line at the end.
 *
 * Still past the style's 600 lines, like undici's client-h1: the request side, retries and pool hand-back are one state
 * machine whose invariants (a retry only before the first response byte, a socket back to the pool only when both
 * bodies were framed exactly) would be spread over files if split further. Pure decisions
 * live beside it: retry-policy, route-actions, byte-tunnel, http1-body-framing (where a body ends), http1-head-writer
 * (what a forwarded head says), http1-head-parser; the body of an accepted response is carried by http1-response-stream,
 * and the bytes move through http1-transport.
 */
import { BodyFraming } from './http1-body-framing.js';
import { appendedFieldLines, extendedVerbatimHead, requestHeadText, switchingProtocolsHead } from './http1-head-writer.js';
import { Http1ResponseStream, type ResponseStreamOwner } from './http1-response-stream.js';
import { RouteTable, type CompiledRoute } from './route-table.js';
import { HeaderList } from './header-list.js';
import { findHeadEnd, HeadParseError, parseResponseHead, type RequestHead, type ResponseHead } from './http1-head-parser.js';
import type { Http1ServerConnection } from './http1-server-connection.js';
import type { L7Target } from './l7-context.js';
import { isConnecting, type Http1UpstreamConnection, type UpstreamOwner } from './http1-pool.js';
import { observeBody, onRequestBodyHook, onResponseBodyHook, runFilterHook, runRequestHeaders, runResponseHeaders, type BodyAccess, type FilterStatus, type L7FilterStream, type LocalReply } from './l7-filter.js';
import { exchangeContextFields } from './http-access-log.js';
import { L7_ERROR, localReply, serializeLocalReply } from './local-reply.js';
import { continueTrace, type TraceContext } from './traceparent.js';
import { ExchangeRequestInfo, requestIdOf } from './exchange-request-info.js';
import type { UpstreamCluster, UpstreamEndpoint } from './upstream-cluster.js';
import { requestHash } from './load-balancer.js';
import { weftErrorOf } from '../errors.js';
import { applyHeaderOps, rewritePath } from './route-actions.js';
import { backoffMs, IDEMPOTENT_METHODS, isRetriableAnswer, isRetriableFailure, type AttemptFailure } from './retry-policy.js';
import { spliceTunnel } from './byte-tunnel.js';
import { requestAuthority } from './request-authority.js';

/** Request bodies up to this size are kept so the request can be retried. */
const RETRY_BUFFER_BYTES = 64 * 1024;

type Phase = 'filters' | 'connecting' | 'waiting' | 'streaming' | 'done';

/** Shared empty lists: most requests have no filters and no body, so their lists are never allocated. */
const NO_STREAMS: L7FilterStream[] = Object.freeze([]) as unknown as L7FilterStream[];
const NO_BYTES: Buffer[] = Object.freeze([]) as unknown as Buffer[];

export class Http1Exchange implements UpstreamOwner, ResponseStreamOwner, BodyAccess {
  readonly #conn: Http1ServerConnection;
  readonly #head: RequestHead;
  readonly #headers: HeaderList;
  readonly #start = performance.now();
  #phase: Phase = 'filters';
  #path: string;
  #authority: string;
  #route: CompiledRoute | undefined;
  #cluster: UpstreamCluster | undefined;
  #endpoint: UpstreamEndpoint | undefined;
  #upstream: Http1UpstreamConnection | null = null;
  #streams: L7FilterStream[] = NO_STREAMS;
  #trace: TraceContext | undefined;
  #flags = '';
  #attempts = 0;
  #retrying = false;
  #requestStarted = false;

  // Request body framing (downstream → upstream).
  readonly #req: BodyFraming;
  #reqComplete: boolean;
  #reqQueue: Buffer[] = NO_BYTES;
  /** A copy of the body for retries; null once it outgrew RETRY_BUFFER_BYTES. */
  #reqRetained: Buffer[] | null = NO_BYTES;
  #reqRetainedBytes = 0;
  #reqBytes: number;
  #bufferRequest = false;
  /** Some filter stream observes request body pieces. */
  #hasRequestBodyHooks = false;
  /** Request-header filters finished (a buffered body must wait for them). */
  #headersDone = false;
  #bufferedBody: Buffer[] = NO_BYTES;
  #bufferedBytes = 0;
  #replacedRequestBody: Buffer | undefined;

  // Response (upstream → downstream).
  #resBuf: Buffer | null = null;
  #res: ResponseHead | undefined;
  /** Set with the final response head. */
  #response: Http1ResponseStream | null = null;
  /** Bytes of a local reply or tunnel answer (the response stream counts its own). */
  #resBytes = 0;
  /** A local reply or tunnel answer went out. */
  #resStarted = false;
  #status = 0;
  #grpcStatus = '-';
  #keepAlive: boolean;
  #bufferResponse = false;
  /** Streams that observe response body pieces. */
  #responseBodyHooks: L7FilterStream[] = NO_STREAMS;
  #replacedResponseBody: Buffer | undefined;
  #timer: NodeJS.Timeout | null = null;
  #tryTimer: NodeJS.Timeout | null = null;
  #waiter: ((c: Http1UpstreamConnection | Error) => void) | null = null;
  #error = '';
  #lastEndpoint = '-';
  /** What filters read about the request (and the upstream of the latest attempt); only with filters. */
  #info: ExchangeRequestInfo | undefined;
  #target: L7Target | undefined;
  /** A filter edited the request (Envoy's clearRouteCache): the route is matched again before the first dispatch. */
  #rematchRoute = false;
  /** A filter changed the method, target or authority: the head is written anew, never forwarded verbatim. */
  #requestLineEdited = false;

  constructor(conn: Http1ServerConnection, head: RequestHead) {
    this.#conn = conn;
    this.#head = head;
    this.#headers = new HeaderList(head.headers);
    this.#reqBytes = head.headBytes;
    this.#keepAlive = !head.close;
    this.#req = BodyFraming.forRequest(head);
    this.#reqComplete = this.#req.complete;
    const named = requestAuthority(head);
    if ('error' in named) {
      this.#badTarget = named.error;
      this.#authority = head.host ?? '';
    } else {
      this.#authority = named.authority;
      if (named.replaceHost) {
        // absolute-form: the target's authority is the request's; the Host line goes as that authority (RFC 9112 §3.2.2).
        head.target = named.target;
        head.host = named.authority;
        this.#headers.set('host', named.authority);
      }
    }
    const q = head.target.indexOf('?');
    this.#path = q === -1 ? head.target : head.target.slice(0, q);
  }

  /** Why the request target is unusable (answered 400 in start()). */
  #badTarget: string | undefined;

  get wantsRequestBody(): boolean {
    return !this.#reqComplete;
  }

  // === chain ===

  start(): void {
    const ctx = this.#conn.ctx;
    const snapshot = ctx.state.current;
    const target = this.#conn.currentTarget(snapshot);
    this.#target = target;
    const table = this.#conn.routeTable;
    if (this.#badTarget !== undefined) {
      this.#keepAlive = false;
      return this.#replyLocal(localReply(400, L7_ERROR.badRequest, 'DPE', this.#badTarget));
    }
    // HTTP/1.0 may omit Host; the upstream (HTTP/1.1) needs one, so the destination's name stands in.
    if (this.#authority === '') this.#authority = target.service?.hostname ?? `${target.originalDst.address}:${target.originalDst.port}`;
    const route = table.match(this.#head.method, this.#path, this.#headers);
    if (this.#head.upgrade || this.#head.method === 'CONNECT') this.#keepAlive = false;
    if (this.#head.method === 'CONNECT' && route?.connect !== true) return this.#refuseConnect();
    if (route === undefined) return this.#replyLocal(localReply(404, L7_ERROR.noRoute, 'NR', 'no route matched'));
    this.#route = route;

    const filters = this.#conn.filters;
    if (filters.length > 0) {
      const info = (this.#info = new ExchangeRequestInfo(this.#head.method, this.#head.target, this.#authority, this.#head.minor === 1 ? 'HTTP/1.1' : 'HTTP/1.0', target, target.service?.hostname, this.#headers));
      for (const f of filters) {
        const s = f.start(info, this);
        if (s === undefined) continue;
        if (this.#streams === NO_STREAMS) this.#streams = [];
        this.#streams.push(s);
        if (s.onRequestBody !== undefined) this.#hasRequestBodyHooks = true;
        if (f.bufferRequestBody === true && s.onRequestBody !== undefined) this.#bufferRequest = true;
        if (f.bufferResponseBody === true && s.onResponseBody !== undefined) this.#bufferResponse = true;
        if (s.onResponseBody !== undefined) {
          if (this.#responseBodyHooks === NO_STREAMS) this.#responseBodyHooks = [];
          this.#responseBodyHooks.push(s);
        }
      }
    }
    if (this.#streams.length === 0) return this.#afterRequestHeaders();
    const status = runRequestHeaders(this.#streams, this.#headers, this.#reqComplete);
    if (status === undefined) return this.#afterRequestHeaders();
    this.#settle(status, () => this.#afterRequestHeaders());
  }

  /** Continues with `next` when a filter status is "continue", answers locally otherwise; handles paused (Promise) statuses. */
  #settle(status: FilterStatus, next: () => void): void {
    if (status === undefined) return next();
    if (!(status instanceof Promise)) return this.#replyLocal(status);
    this.#conn.io.pause();
    status.then(
      (r) => {
        if (this.#phase === 'done') return;
        this.#conn.io.resume();
        if (r === undefined) next();
        else this.#replyLocal(r);
      },
      (err: unknown) => {
        if (this.#phase === 'done') return;
        this.#conn.io.resume();
        this.#error = String(weftErrorOf(err)?.code ?? 'filter failed');
        this.#replyLocal(localReply(500, L7_ERROR.pluginFailed, 'UAEX', 'a filter failed'));
      },
    );
  }

  #afterRequestHeaders(): void {
    if (this.#phase === 'done') return;
    this.#headersDone = true;
    if (this.#bufferRequest && !this.#reqComplete) {
      // Body arrives through feedRequestBody; dispatch happens once it is complete. A client waiting for
      // 100 Continue gets it from weft (the upstream only sees the finished body), as Envoy does.
      if (this.#head.expectContinue) {
        this.#conn.io.write('HTTP/1.1 100 Continue\r\n\r\n');
        this.#headers.remove('expect');
      }
      return;
    }
    // Body callbacks are for bodies: a request without one goes straight on, as Envoy never calls on_request_body for it.
    if (this.#bufferRequest && (this.#head.chunked || this.#head.contentLength > 0)) return this.#runBufferedRequestBody();
    this.#dispatch();
  }

  #runBufferedRequestBody(): void {
    const body = this.#bufferedBytes === 0 ? Buffer.alloc(0) : Buffer.concat(this.#bufferedBody, this.#bufferedBytes);
    this.#bufferedBody = NO_BYTES;
    this.#settle(runFilterHook(this.#streams, 0, onRequestBodyHook, body, true), () => {
      this.#replacedRequestBody ??= body;
      this.#dispatch();
    });
  }

  /** As nginx does: an HTTP service is no tunnel endpoint unless a route says so (Envoy's upgrade_configs CONNECT). */
  #refuseConnect(): void {
    this.#keepAlive = false;
    this.#replyLocal({ ...localReply(405, L7_ERROR.methodNotAllowed, 'DPE', 'CONNECT is not allowed to this service'), headers: [['allow', 'GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS']] });
  }

  // === BodyAccess (what filters may change besides headers) ===

  replaceRequestBody(body: Buffer): void {
    this.#replacedRequestBody = body;
  }

  replaceResponseBody(body: Buffer): void {
    this.#replacedResponseBody = body;
  }

  clearRouteCache(): void {
    this.#rematchRoute = true;
  }

  setResponseStatus(status: number): string | undefined {
    const res = this.#res;
    if (res === undefined || this.#responseStarted) return 'the response head already went out';
    if ((status === 204 || status === 304) && !this.#response!.framing.complete) return `a ${status} response cannot carry the upstream's body`;
    res.status = status;
    // The upstream's reason phrase belongs to its own status; the head is written anew with the new one's.
    res.reason = '';
    res.verbatim = undefined;
    this.#status = status;
    return undefined;
  }

  /** A filter's :method/:path/:authority edit (Envoy semantics): the authority becomes the Host sent upstream. */
  setRequestLine(method: string, path: string, authority: string): void {
    const h = this.#head;
    h.method = method;
    h.target = path;
    const q = path.indexOf('?');
    this.#path = q === -1 ? path : path.slice(0, q);
    if (authority !== this.#authority) {
      this.#authority = authority;
      h.host = authority;
      this.#headers.set('host', authority);
    }
    this.#requestLineEdited = true;
    this.#rematchRoute = true;
  }

  // === router: timeout → retry → load balancing → pool ===

  #dispatch(): void {
    if (this.#phase === 'done') return;
    if (this.#rematchRoute) {
      this.#rematchRoute = false;
      const rematched = this.#conn.routeTable.match(this.#head.method, this.#path, this.#headers);
      if (rematched === undefined) return this.#replyLocal(localReply(404, L7_ERROR.noRoute, 'NR', 'no route matched after a filter edited the request'));
      this.#route = rematched;
      // A filter that turned the request into a CONNECT meets the same gate as a client that sent one.
      if (this.#head.method === 'CONNECT' && !rematched.connect) return this.#refuseConnect();
    }
    const route = this.#route!;
    if (route.timeoutMs > 0 && this.#timer === null) this.#timer = setTimeout(() => this.#onTimeout(), route.timeoutMs);
    const ctx = this.#conn.ctx;
    const snapshot = ctx.state.current;
    const target = this.#conn.currentTarget(snapshot);
    const backend = RouteTable.pickBackend(route, route.backends.length === 1 ? 0 : Math.random());
    let cluster: UpstreamCluster;
    if (backend?.service !== undefined) {
      const port = backend.port ?? target.servicePort?.port ?? target.originalDst.port;
      // Compiled routes live as long as their snapshot, so the resolved cluster can be kept on the backend.
      const cached = backend.cluster;
      cluster = cached !== undefined && cached.port === port ? cached.cluster : ctx.clusters.forService(snapshot, backend.service, port, backend.labels, route.loadBalancer);
      if (cached === undefined) backend.cluster = { port, cluster };
    } else {
      const w = target.workload;
      cluster = ctx.clusters.forAddress(snapshot, target.originalDst.address, target.originalDst.port, w);
    }
    this.#cluster = cluster;
    if (!this.#retrying && !cluster.tryStartRequest()) return this.#replyLocal(localReply(503, L7_ERROR.overflow, 'UO', `upstream ${cluster.name} is overloaded (max requests)`));
    if (!this.#requestStarted) this.#requestCluster = cluster;
    this.#requestStarted = true;
    const now = Date.now();
    const hashOn = route.loadBalancer?.hashOn ?? cluster.lbConfig?.hashOn;
    const hash = hashOn === undefined ? undefined : requestHash(hashOn, (n) => this.#headers.get(n), target.source.address);
    const ep = cluster.pick(now, hash);
    if (ep === undefined) return this.#replyLocal(localReply(503, L7_ERROR.noHealthyUpstream, 'UH', `no healthy upstream for ${cluster.name}`));
    this.#endpoint = ep;
    if (this.#info !== undefined) this.#info.endpoint = ep;
    this.#lastEndpoint = ep.key;
    ep.activeRequests++;
    this.#attempts++;
    if (this.#head.method === 'CONNECT') return this.#startConnectTunnel(ep);
    this.#phase = 'connecting';
    const waiter = (c: Http1UpstreamConnection | Error): void => this.#onConnection(c);
    this.#waiter = waiter;
    if (!ep.poolFor(target.upstreamIdentity).acquire(cluster, waiter)) {
      this.#waiter = null;
      ep.activeRequests--;
      this.#replyLocal(localReply(503, L7_ERROR.overflow, 'UO', `upstream ${cluster.name} is overloaded (pending requests)`));
    }
  }

  #onConnection(c: Http1UpstreamConnection | Error): void {
    this.#waiter = null;
    if (this.#phase !== 'connecting') {
      // The exchange ended while waiting (timeout, client gone): hand the connection straight back.
      if (!(c instanceof Error)) c.pool.release(c, true, this.#cluster!);
      return;
    }
    if (c instanceof Error) {
      this.#endAttempt('local-failure');
      return this.#attemptFailed('connect-failure', 'UF', localReply(503, L7_ERROR.upstreamConnect, 'UF', `upstream connect error: ${c.message}`));
    }
    this.#upstream = c;
    c.owner = this;
    c.requests++;
    this.#phase = 'waiting';
    const perTry = this.#route?.retry?.perTryTimeoutMs;
    if (perTry !== undefined) this.#tryTimer = setTimeout(() => this.#onTryTimeout(), perTry);
    this.#writeRequestHead(c);
  }

  #writeRequestHead(c: Http1UpstreamConnection): void {
    const h = this.#head;
    const route = this.#route!;
    const headers = this.#headers;
    if (this.#attempts === 1 && route.requestHeaders !== undefined) applyHeaderOps(headers, route.requestHeaders);
    let target = h.target;
    if (route.rewriteUri !== undefined || route.rewriteRegex !== undefined) target = rewritePath(route, this.#path, target);
    const trace = (this.#trace ??= continueTrace(headers.get('traceparent')));
    const body = this.#replacedRequestBody;
    const io = c.io;
    const raw = h.verbatim;
    const appended = raw === undefined || body !== undefined || target !== h.target || route.rewriteAuthority !== undefined || this.#requestLineEdited ? undefined : appendedFieldLines(headers, true);
    if (appended !== undefined) {
      // Nothing in the head changes but the fields filters added and the trace context: it leaves as it came with
      // those lines after it (no re-serialization).
      io.write(extendedVerbatimHead(raw!, `${appended}traceparent: ${trace.header}\r\n`));
    } else {
      const text = requestHeadText(h, headers, { target, rewriteAuthority: route.rewriteAuthority, authority: this.#authority, traceparent: trace.header, replacedBodyLength: body?.length });
      if (body !== undefined) return void io.writeHead(text, body);
      io.write(text);
    }
    if (this.#attempts > 1 && this.#reqRetained !== null) for (const b of this.#reqRetained) io.write(b);
    else for (const b of this.#reqQueue) io.write(b);
    this.#reqQueue = NO_BYTES;
  }

  // === request body ===

  /** Downstream body bytes from `start`; returns where the body ended inside `chunk`, or -1 when all was body. */
  feedRequestBody(chunk: Buffer, start: number): number {
    const framing = this.#req;
    // Body filters see content, not chunk coding: a chunked body is decoded for them (and for buffering) while the
    // coded bytes are what a streamed request forwards.
    let decoded: Buffer[] | undefined;
    const decode = framing.scanner !== null && (this.#bufferRequest || this.#hasRequestBodyHooks) ? (d: Buffer) => (decoded ??= []).push(d) : undefined;
    const end = framing.take(chunk, start, decode);
    if (end === -1) {
      // Where this message ends is unknown: nothing after it can be read as a request (RFC 9112 §6.3). The answer says
      // `connection: close` (or the connection is cut when a response already started) and the rest is never parsed.
      this.#keepAlive = false;
      this.#replyLocal(localReply(400, L7_ERROR.badRequest, 'DPE', `invalid chunked body: ${framing.error}`));
      this.#conn.stopReading();
      return -1;
    }
    let rest = -1;
    if (framing.complete) {
      this.#reqComplete = true;
      if (end < chunk.length) rest = end;
    }
    this.#reqBytes += end - start;
    const piece = framing.forwardable(chunk, start, end);
    if (this.#phase === 'done') return rest;
    const content = decode === undefined ? [piece] : (decoded ?? []);
    if (this.#bufferRequest) {
      for (const c of content) this.#bufferedBytes += c.length;
      if (this.#bufferedBytes > this.#conn.ctx.limits.maxBufferedBodyBytes) {
        this.#keepAlive = false;
        this.#replyLocal(localReply(413, L7_ERROR.bodyTooLarge, 'DPE', 'request body exceeds the buffering limit'));
        return rest;
      }
      if (this.#bufferedBody === NO_BYTES) this.#bufferedBody = [];
      this.#bufferedBody.push(...content);
      if (this.#reqComplete && this.#phase === 'filters' && this.#headersDone) this.#runBufferedRequestBody();
      return rest;
    }
    this.#forwardRequestPiece(piece, content);
    return rest;
  }

  /** Sends (or queues) `piece` as it came; body filters observe `content`, the same bytes without chunk coding. */
  #forwardRequestPiece(piece: Buffer, content: readonly Buffer[]): void {
    if (this.#reqRetained !== null) {
      this.#reqRetainedBytes += piece.length;
      if (this.#reqRetainedBytes > RETRY_BUFFER_BYTES) this.#reqRetained = null;
      else {
        if (this.#reqRetained === NO_BYTES) this.#reqRetained = [];
        this.#reqRetained.push(piece);
      }
    }
    if (this.#hasRequestBodyHooks) observeBody(this.#streams, onRequestBodyHook, content, this.#reqComplete);
    const up = this.#upstream;
    if (up === null || this.#phase === 'connecting' || this.#phase === 'filters') {
      if (this.#reqQueue === NO_BYTES) this.#reqQueue = [];
      this.#reqQueue.push(piece);
      return;
    }
    if (!up.io.write(piece)) this.#conn.io.pause();
  }

  onUpstreamDrain(): void {
    this.#conn.io.resume();
  }

  // === response ===

  onUpstreamData(chunk: Buffer): void {
    if (this.#phase === 'waiting') {
      this.#resBuf = this.#resBuf === null ? chunk : Buffer.concat([this.#resBuf, chunk]);
      this.#parseResponseHead();
      return;
    }
    if (this.#phase === 'streaming') this.#response!.forward(chunk, 0);
  }

  #parseResponseHead(): void {
    const buf = this.#resBuf!;
    const limits = { maxHeadBytes: this.#conn.ctx.limits.maxRequestHeadersBytes, maxHeaders: this.#conn.ctx.limits.maxHeaders };
    const end = findHeadEnd(buf, 0, limits);
    if (end === 0) return;
    if (end instanceof HeadParseError) return this.#upstreamProtocolError(end.reason);
    const res = parseResponseHead(buf, 0, end, limits);
    if (res instanceof HeadParseError) return this.#upstreamProtocolError(res.reason);
    if (res.status < 200 && res.status !== 101) {
      // 1xx interim responses: 100 Continue reaches a client that asked for it; others are dropped.
      if (res.status === 100 && this.#head.expectContinue && !this.#responseStarted) this.#conn.io.write('HTTP/1.1 100 Continue\r\n\r\n');
      this.#resBuf = end === buf.length ? null : buf.subarray(end);
      if (this.#resBuf !== null) this.#parseResponseHead();
      return;
    }
    this.#clearTryTimer();
    this.#res = res;
    this.#status = res.status;
    const grpc = res.headers.indexOf('grpc-status');
    if (grpc !== -1 && grpc % 2 === 0) this.#grpcStatus = res.headers[grpc + 1]!;
    const outcome = res.status >= 500 ? (res.status >= 502 && res.status <= 504 ? 'gateway' : '5xx') : 'success';
    this.#cluster!.report(this.#endpoint!, outcome, Date.now());
    const verdict = this.#retryVerdict(res);
    if (verdict === 'exhausted') this.#flags = 'URX';
    if (verdict === 'retry') {
      this.#endAttempt(null);
      this.#discardUpstream();
      return this.#retryOrFail('status', localReply(res.status, L7_ERROR.upstreamReset, 'URX', 'upstream retries exhausted'));
    }
    const rest = end === buf.length ? null : buf.subarray(end);
    this.#resBuf = null;
    if (res.status === 101) return this.#startTunnel(res, rest);
    const response = new Http1ResponseStream(this.#head, res, this.#conn.io, this, this.#responseBodyHooks, this.#bufferResponse, this.#conn.ctx.limits.maxBufferedBodyBytes);
    this.#response = response;
    if (response.closeAfter) this.#keepAlive = false;
    const headers = new HeaderList(res.headers);
    if (this.#route?.responseHeaders !== undefined) applyHeaderOps(headers, this.#route.responseHeaders);
    this.#phase = 'streaming';
    const emptyBody = response.framing.complete;
    if (this.#streams.length === 0) return this.#sendResponseHead(res, headers, rest);
    const status = runResponseHeaders(this.#streams, res.status, headers, emptyBody);
    if (status === undefined) return this.#sendResponseHead(res, headers, rest);
    // Only a paused filter stops the upstream; pausing costs two epoll changes, too much for every request.
    if (status instanceof Promise) this.#upstream?.io.pause();
    this.#settle(status, () => {
      this.#upstream?.io.resume();
      this.#sendResponseHead(res, headers, rest);
    });
  }

  #sendResponseHead(res: ResponseHead, headers: HeaderList, rest: Buffer | null): void {
    if (this.#phase === 'done') return;
    if (this.#conn.draining) this.#keepAlive = false;
    // An answer that starts before the request body was read (an early 401/413, an expect-based refusal): the rest of
    // that body will never be framed as a request, so the client is told now that the connection ends with it.
    if (!this.#reqComplete) this.#keepAlive = false;
    const connection = !this.#keepAlive ? 'close' : this.#head.minor === 0 ? 'keep-alive' : undefined;
    this.#response!.start(res, headers, connection, rest);
  }

  // === ResponseStreamOwner ===

  onResponseComplete(): void {
    this.#finishResponse();
  }

  onResponseInvalid(reason: string): void {
    this.#upstreamProtocolError(reason);
  }

  onResponseTooLarge(): void {
    this.#discardUpstream();
    this.#keepAlive = false;
    this.#replyLocal(localReply(500, L7_ERROR.bodyTooLarge, 'UPE', 'response body exceeds the buffering limit'));
  }

  onResponseCollected(body: Buffer): void {
    this.#settle(runFilterHook(this.#streams, 0, onResponseBodyHook, body, true), () => {
      this.#response!.sendCollected(this.#replacedResponseBody ?? body);
      this.#finishResponse();
    });
  }

  pauseUpstream(): void {
    this.#upstream?.io.pause();
  }

  /** Bytes reached the client: no retry, no local reply any more. */
  get #responseStarted(): boolean {
    return this.#resStarted || this.#response?.started === true;
  }

  onDownstreamDrain(): void {
    this.#upstream?.io.resume();
  }

  #finishResponse(): void {
    const up = this.#upstream;
    this.#upstream = null;
    this.#endAttempt('success');
    if (up !== null) {
      const reusable = !this.#response!.overran && this.#reqComplete && !this.#res!.close;
      up.pool.release(up, reusable, this.#cluster!);
    }
    this.#complete();
  }

  onUpstreamClose(error: Error | undefined): void {
    this.#upstream = null;
    if (this.#phase === 'streaming' && this.#response?.framing.untilClose === true) {
      this.#response.endedByClose();
      this.#endAttempt('success');
      return this.#complete();
    }
    if (this.#phase === 'waiting') {
      this.#clearTryTimer();
      this.#endAttempt('local-failure');
      const detail = error === undefined ? 'connection closed before a response' : `connection reset: ${error.message}`;
      return this.#attemptFailed('reset', 'UC', localReply(503, L7_ERROR.upstreamReset, 'UC', `upstream ${detail}`));
    }
    if (this.#phase === 'streaming') {
      // Mid-body loss: the client already has a status line; only cutting the connection is honest.
      this.#flags = 'UC';
      this.#endAttempt('local-failure');
      this.#keepAlive = false;
      this.#conn.io.destroy();
      this.#complete();
    }
  }

  // === retries, timeouts, failures ===

  /** 'exhausted' forwards the upstream's answer but flags URX, as Envoy does when the retry limit is hit. */
  #retryVerdict(res: ResponseHead): 'retry' | 'exhausted' | 'no' {
    const r = this.#route?.retry;
    if (r === undefined || !isRetriableAnswer(r, res.status, this.#grpcStatus)) return 'no';
    if (this.#canRetry(r.attempts)) return 'retry';
    return this.#attempts > r.attempts ? 'exhausted' : 'no';
  }

  /** Never retry once bytes reached the client, or a non-idempotent request whose body is gone. */
  #canRetry(attempts: number): boolean {
    if (this.#responseStarted || this.#attempts > attempts) return false;
    if (!this.#reqComplete) return false;
    if (this.#reqRetained === null && this.#replacedRequestBody === undefined && this.#reqBytes > this.#head.headBytes) return false;
    return true;
  }

  #attemptFailed(kind: AttemptFailure, flag: string, reply: LocalReply): void {
    const r = this.#route?.retry;
    // A reused keep-alive connection the upstream had already closed: retry once, as every HTTP client does.
    const stale = kind === 'reset' && this.#attempts === 1 && (this.#upstreamRequests ?? 0) > 1 && IDEMPOTENT_METHODS.has(this.#head.method) && this.#canRetry(1);
    if (stale && !this.#retriedStale) {
      this.#retriedStale = true;
      this.#attempts--;
      return this.#retry(0);
    }
    if (r !== undefined && isRetriableFailure(r, kind) && this.#canRetry(r.attempts) && (kind !== 'reset' || IDEMPOTENT_METHODS.has(this.#head.method) || this.#reqBytes === this.#head.headBytes)) {
      return this.#retryOrFail(kind, reply);
    }
    this.#flags = flag;
    this.#replyLocal(reply);
  }

  #retriedStale = false;
  #upstreamRequests: number | undefined;

  #retryOrFail(_kind: string, reply: LocalReply): void {
    const r = this.#route!.retry!;
    if (this.#attempts > r.attempts) {
      this.#flags = 'URX';
      return this.#replyLocal({ ...reply, flag: 'URX' });
    }
    // Envoy counts a retry as active until the retried request finishes; one exchange holds at most one slot.
    if (this.#retryHeld) {
      this.#retryCluster?.endRetry();
      this.#retryHeld = false;
    }
    if (!this.#cluster!.tryStartRetry(r.budgetPercent, r.minRetryConcurrency)) {
      this.#flags = 'UO';
      return this.#replyLocal(localReply(503, L7_ERROR.overflow, 'UO', `retry budget of ${this.#cluster!.name} exhausted`));
    }
    this.#retryHeld = true;
    this.#retryCluster = this.#cluster;
    this.#retry(backoffMs(r, this.#attempts));
  }

  #retryHeld = false;
  #requestCluster: UpstreamCluster | undefined;
  #retryCluster: UpstreamCluster | undefined;

  #retry(delayMs: number): void {
    this.#phase = 'filters';
    this.#resBuf = null;
    this.#res = undefined;
    this.#grpcStatus = '-';
    this.#retrying = true;
    const go = (): void => {
      this.#backoffTimer = null;
      if (this.#phase === 'done') return;
      this.#dispatch();
    };
    if (delayMs === 0) go();
    else {
      const t = setTimeout(go, delayMs);
      this.#backoffTimer = t;
    }
  }

  #backoffTimer: NodeJS.Timeout | null = null;

  #onTimeout(): void {
    this.#timer = null;
    if (this.#phase === 'done') return;
    this.#flags = 'UT';
    if (this.#responseStarted) {
      this.#discardUpstream();
      this.#keepAlive = false;
      this.#conn.io.destroy();
      this.#complete();
      return;
    }
    this.#discardUpstream();
    this.#replyLocal(localReply(504, L7_ERROR.upstreamTimeout, 'UT', 'upstream request timeout'));
  }

  #onTryTimeout(): void {
    this.#tryTimer = null;
    if (this.#phase !== 'waiting') return;
    this.#endAttempt('local-failure');
    this.#discardUpstream();
    this.#attemptFailed('timeout', 'UT', localReply(504, L7_ERROR.upstreamTimeout, 'UT', 'upstream per-try timeout'));
  }

  #clearTryTimer(): void {
    if (this.#tryTimer !== null) {
      clearTimeout(this.#tryTimer);
      this.#tryTimer = null;
    }
  }

  #upstreamProtocolError(reason: string): void {
    this.#clearTryTimer();
    this.#discardUpstream();
    this.#endAttempt('local-failure');
    this.#flags = 'UPE';
    if (this.#responseStarted) {
      this.#keepAlive = false;
      this.#conn.io.destroy();
      return this.#complete();
    }
    this.#replyLocal(localReply(502, L7_ERROR.upstreamProtocol, 'UPE', `upstream sent an invalid response: ${reason}`));
  }

  /** Closes the current upstream connection (its state is unknown) without reporting back to this exchange. */
  #discardUpstream(): void {
    const up = this.#upstream;
    this.#upstream = null;
    if (up !== null) up.destroy();
    if (this.#waiter !== null && this.#endpoint !== undefined) {
      this.#endpoint.poolFor(this.#conn.target.upstreamIdentity).cancel(this.#waiter);
      this.#waiter = null;
      this.#endpoint.activeRequests--;
    }
  }

  /** Ends the accounting of the current attempt on its endpoint. */
  #endAttempt(outcome: 'success' | 'local-failure' | null): void {
    const ep = this.#endpoint;
    if (ep === undefined) return;
    this.#upstreamRequests = this.#upstream?.requests ?? this.#upstreamRequests;
    ep.activeRequests--;
    if (outcome === 'local-failure') this.#cluster?.report(ep, 'local-failure', Date.now());
    this.#endpoint = undefined;
  }

  // === tunnels (WebSocket and other upgrades) ===

  #startTunnel(res: ResponseHead, rest: Buffer | null): void {
    const up = this.#upstream;
    if (up === null || !this.#head.upgrade) return this.#upstreamProtocolError('101 without an upgrade request');
    this.#clearTimers();
    const out = switchingProtocolsHead(res);
    this.#resStarted = true;
    this.#phase = 'done';
    // The pooled connection leaves the pool for good: from here it is a byte pipe.
    up.owner = null;
    const down = this.#conn.io.release();
    spliceTunnel(down, up.io.release(), rest === null ? [Buffer.from(out, 'latin1')] : [Buffer.from(out, 'latin1'), rest], this.#conn.takeBuffered());
    this.#endAttempt('success');
    this.#status = 101;
    this.#record();
  }

  /** CONNECT (RFC 9110 §9.3.6): a raw TCP tunnel to the picked endpoint once the chain allowed it. */
  #startConnectTunnel(ep: UpstreamEndpoint): void {
    this.#phase = 'connecting';
    const up = this.#conn.ctx.connect(ep.address, ep.port, this.#conn.target.upstreamIdentity);
    const fail = (): void => {
      up.destroy();
      this.#endAttempt('local-failure');
      this.#replyLocal(localReply(503, L7_ERROR.upstreamConnect, 'UF', `upstream connect error: ${ep.key}`));
    };
    up.once('error', fail);
    const onReady = (): void => {
      up.off('error', fail);
      this.#clearTimers();
      this.#phase = 'done';
      this.#resStarted = true;
      this.#status = 200;
      spliceTunnel(this.#conn.io.release(), up, ['HTTP/1.1 200 Connection Established\r\n\r\n'], this.#conn.takeBuffered());
      this.#endAttempt('success');
      this.#record();
    };
    if (isConnecting(up)) up.once('connect', onReady);
    else process.nextTick(onReady);
  }

  // === completion ===

  onDownstreamEnd(): void {
    if (!this.#reqComplete) this.onDownstreamClose();
  }

  onDownstreamClose(): void {
    if (this.#phase === 'done') return;
    this.#flags = this.#flags === '' ? 'DC' : this.#flags;
    this.#discardUpstream();
    this.#endAttempt(null);
    this.#keepAlive = false;
    this.#complete();
  }

  #replyLocal(reply: LocalReply): void {
    if (this.#phase === 'done') return;
    this.#discardUpstream();
    this.#endAttempt(null);
    if (this.#flags === '' && reply.flag !== undefined) this.#flags = reply.flag;
    if (reply.code !== undefined && this.#error === '') this.#error = reply.code;
    this.#status = reply.status;
    if (reply.reset === true) {
      this.#keepAlive = false;
      this.#conn.io.destroy();
      return this.#complete();
    }
    // Unread request body bytes would be parsed as the next request: close instead of skipping them.
    if (!this.#reqComplete) this.#keepAlive = false;
    if (this.#conn.draining) this.#keepAlive = false;
    if (this.#responseStarted) {
      this.#conn.io.destroy();
      return this.#complete();
    }
    const buf = serializeLocalReply(reply, !this.#keepAlive, this.#head.method === 'HEAD');
    this.#resStarted = true;
    this.#resBytes += buf.length;
    this.#conn.io.write(buf);
    this.#complete();
  }

  /** Sends the shadow copy when the sampled percentage says so and the body is still at hand. */
  #mirror(m: NonNullable<CompiledRoute['mirror']>): void {
    if (m.percent < 100 && Math.random() * 100 >= m.percent) return;
    const hasBody = this.#reqBytes > this.#head.headBytes;
    // Retained chunks of a chunked body are still chunk-coded; only plain bodies are replayed to the mirror.
    if (hasBody && this.#replacedRequestBody === undefined && (this.#reqRetained === null || !this.#reqComplete || this.#head.chunked)) return;
    const b = m.backend;
    if (b.service === undefined) return;
    const target = this.#target ?? this.#conn.target;
    const snapshot = this.#conn.ctx.state.current;
    const port = b.port ?? target.servicePort?.port ?? target.originalDst.port;
    const cluster = this.#conn.ctx.clusters.forService(snapshot, b.service, port, b.labels, undefined);
    const body = this.#replacedRequestBody ?? (hasBody && this.#reqRetained !== null ? Buffer.concat(this.#reqRetained) : undefined);
    this.#conn.ctx.mirror.send(cluster, { method: this.#head.method, target: this.#head.target, authority: this.#authority, headers: this.#headers.flat, body, ...(target.upstreamIdentity === undefined ? {} : { identity: target.upstreamIdentity }) });
  }

  #clearTimers(): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    this.#clearTryTimer();
    if (this.#backoffTimer !== null) clearTimeout(this.#backoffTimer);
    this.#backoffTimer = null;
  }

  #complete(): void {
    if (this.#phase === 'done') return;
    this.#phase = 'done';
    this.#clearTimers();
    if (this.#requestStarted) this.#requestCluster?.endRequest();
    if (this.#retryHeld) this.#retryCluster?.endRetry();
    this.#retryHeld = false;
    if (this.#route?.mirror !== undefined) this.#mirror(this.#route.mirror);
    this.#record();
    this.#conn.exchangeDone(this, this.#keepAlive && this.#reqComplete);
  }

  #record(): void {
    const ctx = this.#conn.ctx;
    const flags = this.#flags === '' ? '-' : this.#flags;
    const duration = performance.now() - this.#start;
    const resBytes = this.#resBytes + (this.#response?.bytes ?? 0);
    ctx.telemetry.record(this.#conn.peer, this.#status, flags, this.#grpcStatus, duration, this.#reqBytes, resBytes);
    for (const s of this.#streams) s.onDone?.(this.#status, flags);
    if (ctx.accessLog.enabled) {
      const target = this.#target ?? this.#conn.target;
      ctx.accessLog.write({
        start_time: new Date(Date.now() - duration).toISOString(),
        method: this.#head.method,
        path: this.#head.target,
        protocol: this.#head.minor === 1 ? 'HTTP/1.1' : 'HTTP/1.0',
        authority: this.#authority,
        response_code: this.#status,
        response_flags: flags,
        grpc_status: this.#grpcStatus,
        bytes_received: this.#reqBytes,
        bytes_sent: resBytes,
        duration_ms: Math.round(duration * 1000) / 1000,
        upstream_host: this.#lastEndpoint,
        upstream_cluster: this.#cluster?.name ?? '-',
        upstream_attempts: this.#attempts,
        route_name: this.#route?.name ?? '-',
        request_id: requestIdOf(this.#info, this.#headers),
        ...exchangeContextFields(target, this.#trace, this.#headers, this.#error),
      });
    }
  }
}
