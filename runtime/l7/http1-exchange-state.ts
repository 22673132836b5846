/**
 * The state of one HTTP/1.x exchange and how it ends: every field the request's state machine keeps, the local reply,
 * the failure primitives (drop the upstream connection, end an attempt, an upstream protocol error) and completion
 * (mirror, telemetry, access log, the connection's next request).
 *
 * An exchange is one state machine whose invariants (a retry only before the first response byte, a socket back to the
 * pool only when both bodies were framed exactly) span its parts, so it is one object, built in layers, one concern per
 * file, each seeing the state below it: this state → http1-exchange-router (load balancing, the pooled upstream
 * connection, retries and timeouts) → http1-exchange-response (the upstream's answer) → http1-exchange (the filter
 * chain and the request body). Pure decisions live beside them: retry-policy, route-actions, byte-tunnel,
 * http1-body-framing (where a body ends), http1-head-writer (what a forwarded head says), http1-head-parser; the body of
 * an accepted response is carried by http1-response-stream, and the bytes move through http1-transport.
 */
import { BodyFraming } from './http1-body-framing.js';
import type { Http1ResponseStream } from './http1-response-stream.js';
import type { CompiledRoute } from './route-table.js';
import { HeaderList } from './header-list.js';
import type { RequestHead, ResponseHead } from './http1-head-parser.js';
import type { Http1ServerConnection } from './http1-server-connection.js';
import type { L7Target } from './l7-context.js';
import type { Http1UpstreamConnection, PoolWaiter } from './http1-pool.js';
import type { FilterStatus, L7FilterStream, LocalReply } from './l7-filter.js';
import { accessLogTime, exchangeContextFields } from './http-access-log.js';
import { L7_ERROR, localReply, serializeLocalReply } from './local-reply.js';
import type { TraceLine } from './traceparent.js';
import { requestIdOf, type ExchangeRequestInfo } from './exchange-request-info.js';
import type { UpstreamCluster, UpstreamEndpoint } from './upstream-cluster.js';
import { weftErrorOf } from '../errors.js';
import { requestAuthority } from './request-authority.js';
import { monoNow, wallNow } from './loop-clock.js';

export type Phase = 'filters' | 'connecting' | 'waiting' | 'streaming' | 'done';

/** Shared empty lists: most requests have no filters and no body, so their lists are never allocated. */
export const NO_STREAMS: L7FilterStream[] = Object.freeze([]) as unknown as L7FilterStream[];
export const NO_BYTES: Buffer[] = Object.freeze([]) as unknown as Buffer[];

export abstract class Http1ExchangeState {
  declare protected readonly conn: Http1ServerConnection;
  declare protected readonly head: RequestHead;
  declare protected readonly headers: HeaderList;
  declare protected readonly startedAt: number;
  declare protected phase: Phase;
  declare protected path: string;
  declare protected authority: string;
  declare protected route: CompiledRoute | undefined;
  declare protected cluster: UpstreamCluster | undefined;
  declare protected endpoint: UpstreamEndpoint | undefined;
  declare protected upstream: Http1UpstreamConnection | null;
  declare protected streams: L7FilterStream[];
  declare protected trace: TraceLine | undefined;
  declare protected flags: string;
  declare protected attempts: number;
  declare protected retrying: boolean;
  declare protected requestStarted: boolean;

  // Request body framing (downstream → upstream).
  declare protected readonly req: BodyFraming;
  declare protected reqComplete: boolean;
  declare protected reqQueue: Buffer[];
  /** A copy of the body for retries; null once it outgrew RETRY_BUFFER_BYTES. */
  declare protected reqRetained: Buffer[] | null;
  declare protected reqRetainedBytes: number;
  declare protected reqBytes: number;
  declare protected bufferRequest: boolean;
  /** Some filter stream observes request body pieces. */
  declare protected hasRequestBodyHooks: boolean;
  /** Request-header filters finished (a buffered body must wait for them). */
  declare protected headersDone: boolean;
  declare protected bufferedBody: Buffer[];
  declare protected bufferedBytes: number;
  declare protected replacedRequestBody: Buffer | undefined;

  // Response (upstream → downstream).
  declare protected resBuf: Buffer | null;
  declare protected res: ResponseHead | undefined;
  /** Set with the final response head. */
  declare protected response: Http1ResponseStream | null;
  /** Bytes of a local reply or tunnel answer (the response stream counts its own). */
  declare protected resBytes: number;
  /** A local reply or tunnel answer went out. */
  declare protected resStarted: boolean;
  declare protected status: number;
  declare protected grpcStatus: string;
  declare protected keepAlive: boolean;
  declare protected bufferResponse: boolean;
  /** Streams that observe response body pieces. */
  declare protected responseBodyHooks: L7FilterStream[];
  declare protected replacedResponseBody: Buffer | undefined;
  declare protected timer: NodeJS.Timeout | null;
  declare protected tryTimer: NodeJS.Timeout | null;
  /** This exchange while it waits in its endpoint's pool for a connection. */
  declare protected waiter: PoolWaiter | null;
  declare protected error: string;
  declare protected lastEndpoint: string;
  /** What filters read about the request (and the upstream of the latest attempt); only with filters. */
  declare protected info: ExchangeRequestInfo | undefined;
  declare protected target: L7Target | undefined;
  /** A filter edited the request (Envoy's clearRouteCache): the route is matched again before the first dispatch. */
  declare protected rematchRoute: boolean;
  /** A filter changed the method, target or authority: the head is written anew, never forwarded verbatim. */
  declare protected requestLineEdited: boolean;
  /** Why the request target is unusable (answered 400 in start()). */
  declare protected badTarget: string | undefined;
  declare protected retriedStale: boolean;
  declare protected upstreamRequests: number | undefined;
  declare protected retryHeld: boolean;
  declare protected requestCluster: UpstreamCluster | undefined;
  declare protected retryCluster: UpstreamCluster | undefined;
  declare protected backoffTimer: NodeJS.Timeout | null;

  constructor(conn: Http1ServerConnection, head: RequestHead) {
    // Every field is set here, in one place, rather than by class-field initializers: V8 runs a base class's field
    // initializers out of line when a derived class without its own constructor is built (three layers here), which
    // cost more than the rest of the construction together (measured: 67 ns against 33 ns for this many fields).
    this.startedAt = monoNow();
    this.phase = 'filters';
    this.route = undefined;
    this.cluster = undefined;
    this.endpoint = undefined;
    this.upstream = null;
    this.streams = NO_STREAMS;
    this.trace = undefined;
    this.flags = '';
    this.attempts = 0;
    this.retrying = false;
    this.requestStarted = false;
    this.reqQueue = NO_BYTES;
    this.reqRetained = NO_BYTES;
    this.reqRetainedBytes = 0;
    this.bufferRequest = false;
    this.hasRequestBodyHooks = false;
    this.headersDone = false;
    this.bufferedBody = NO_BYTES;
    this.bufferedBytes = 0;
    this.replacedRequestBody = undefined;
    this.resBuf = null;
    this.res = undefined;
    this.response = null;
    this.resBytes = 0;
    this.resStarted = false;
    this.status = 0;
    this.grpcStatus = '-';
    this.bufferResponse = false;
    this.responseBodyHooks = NO_STREAMS;
    this.replacedResponseBody = undefined;
    this.timer = null;
    this.tryTimer = null;
    this.waiter = null;
    this.error = '';
    this.lastEndpoint = '-';
    this.info = undefined;
    this.target = undefined;
    this.rematchRoute = false;
    this.requestLineEdited = false;
    this.badTarget = undefined;
    this.retriedStale = false;
    this.upstreamRequests = undefined;
    this.retryHeld = false;
    this.requestCluster = undefined;
    this.retryCluster = undefined;
    this.backoffTimer = null;
    this.conn = conn;
    this.head = head;
    this.headers = new HeaderList(head.headers);
    this.reqBytes = head.headBytes;
    this.keepAlive = !head.close;
    this.req = BodyFraming.forRequest(head);
    this.reqComplete = this.req.complete;
    const named = requestAuthority(head);
    if ('error' in named) {
      this.badTarget = named.error;
      this.authority = head.host ?? '';
    } else {
      this.authority = named.authority;
      if (named.replaceHost) {
        // absolute-form: the target's authority is the request's; the Host line goes as that authority (RFC 9112 §3.2.2).
        head.target = named.target;
        head.host = named.authority;
        this.headers.set('host', named.authority);
      }
    }
    const q = head.target.indexOf('?');
    this.path = q === -1 ? head.target : head.target.slice(0, q);
  }

  get wantsRequestBody(): boolean {
    return !this.reqComplete;
  }

  /** Bytes reached the client: no retry, no local reply any more. */
  protected get responseStarted(): boolean {
    return this.resStarted || this.response?.started === true;
  }

  /** Continues with `next` when a filter status is "continue", answers locally otherwise; handles paused (Promise) statuses. */
  protected settle(status: FilterStatus, next: () => void): void {
    if (status === undefined) return next();
    if (!(status instanceof Promise)) return this.replyLocal(status);
    this.conn.io.pause();
    status.then(
      (r) => {
        if (this.phase === 'done') return;
        this.conn.io.resume();
        if (r === undefined) next();
        else this.replyLocal(r);
      },
      (err: unknown) => {
        if (this.phase === 'done') return;
        this.conn.io.resume();
        this.error = String(weftErrorOf(err)?.code ?? 'filter failed');
        this.replyLocal(localReply(500, L7_ERROR.pluginFailed, 'UAEX', 'a filter failed'));
      },
    );
  }

  /** As nginx does: an HTTP service is no tunnel endpoint unless a route says so (Envoy's upgrade_configs CONNECT). */
  protected refuseConnect(): void {
    this.keepAlive = false;
    this.replyLocal({ ...localReply(405, L7_ERROR.methodNotAllowed, 'DPE', 'CONNECT is not allowed to this service'), headers: [['allow', 'GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS']] });
  }

  protected clearTryTimer(): void {
    if (this.tryTimer !== null) {
      clearTimeout(this.tryTimer);
      this.tryTimer = null;
    }
  }

  /** Closes the current upstream connection (its state is unknown) without reporting back to this exchange. */
  protected discardUpstream(): void {
    const up = this.upstream;
    this.upstream = null;
    if (up !== null) up.destroy();
    if (this.waiter !== null && this.endpoint !== undefined) {
      this.endpoint.poolFor(this.conn.target.upstreamIdentity).cancel(this.waiter);
      this.waiter = null;
      this.endpoint.activeRequests--;
    }
  }

  /** Ends the accounting of the current attempt on its endpoint. */
  protected endAttempt(outcome: 'success' | 'local-failure' | null): void {
    const ep = this.endpoint;
    if (ep === undefined) return;
    this.upstreamRequests = this.upstream?.requests ?? this.upstreamRequests;
    ep.activeRequests--;
    if (outcome === 'local-failure') this.cluster?.report(ep, 'local-failure', wallNow());
    this.endpoint = undefined;
  }

  protected upstreamProtocolError(reason: string): void {
    this.clearTryTimer();
    this.discardUpstream();
    this.endAttempt('local-failure');
    this.flags = 'UPE';
    if (this.responseStarted) {
      this.keepAlive = false;
      this.conn.io.destroy();
      return this.complete();
    }
    this.replyLocal(localReply(502, L7_ERROR.upstreamProtocol, 'UPE', `upstream sent an invalid response: ${reason}`));
  }

  onDownstreamEnd(): void {
    if (!this.reqComplete) this.onDownstreamClose();
  }

  onDownstreamClose(): void {
    if (this.phase === 'done') return;
    this.flags = this.flags === '' ? 'DC' : this.flags;
    this.discardUpstream();
    this.endAttempt(null);
    this.keepAlive = false;
    this.complete();
  }

  protected replyLocal(reply: LocalReply): void {
    if (this.phase === 'done') return;
    this.discardUpstream();
    this.endAttempt(null);
    if (this.flags === '' && reply.flag !== undefined) this.flags = reply.flag;
    if (reply.code !== undefined && this.error === '') this.error = reply.code;
    this.status = reply.status;
    if (reply.reset === true) {
      this.keepAlive = false;
      this.conn.io.destroy();
      return this.complete();
    }
    // Unread request body bytes would be parsed as the next request: close instead of skipping them.
    if (!this.reqComplete) this.keepAlive = false;
    if (this.conn.draining) this.keepAlive = false;
    if (this.responseStarted) {
      this.conn.io.destroy();
      return this.complete();
    }
    const buf = serializeLocalReply(reply, !this.keepAlive, this.head.method === 'HEAD');
    this.resStarted = true;
    this.resBytes += buf.length;
    this.conn.io.write(buf);
    this.complete();
  }

  /** Sends the shadow copy when the sampled percentage says so and the body is still at hand. */
  protected mirror(m: NonNullable<CompiledRoute['mirror']>): void {
    if (m.percent < 100 && Math.random() * 100 >= m.percent) return;
    const hasBody = this.reqBytes > this.head.headBytes;
    // Retained chunks of a chunked body are still chunk-coded; only plain bodies are replayed to the mirror.
    if (hasBody && this.replacedRequestBody === undefined && (this.reqRetained === null || !this.reqComplete || this.head.chunked)) return;
    const b = m.backend;
    if (b.service === undefined) return;
    const target = this.target ?? this.conn.target;
    const snapshot = this.conn.ctx.state.current;
    const port = b.port ?? target.servicePort?.port ?? target.originalDst.port;
    const cluster = this.conn.ctx.clusters.forService(snapshot, b.service, port, b.labels, undefined);
    const body = this.replacedRequestBody ?? (hasBody && this.reqRetained !== null ? Buffer.concat(this.reqRetained) : undefined);
    this.conn.ctx.mirror.send(cluster, { method: this.head.method, target: this.head.target, authority: this.authority, headers: this.headers.flat, body, ...(target.upstreamIdentity === undefined ? {} : { identity: target.upstreamIdentity }) });
  }

  protected clearTimers(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.clearTryTimer();
    if (this.backoffTimer !== null) clearTimeout(this.backoffTimer);
    this.backoffTimer = null;
  }

  protected complete(): void {
    if (this.phase === 'done') return;
    this.phase = 'done';
    this.clearTimers();
    if (this.requestStarted) this.requestCluster?.endRequest();
    if (this.retryHeld) this.retryCluster?.endRetry();
    this.retryHeld = false;
    if (this.route?.mirror !== undefined) this.mirror(this.route.mirror);
    this.record();
    this.conn.exchangeDone(this, this.keepAlive && this.reqComplete);
  }

  protected record(): void {
    const ctx = this.conn.ctx;
    const flags = this.flags === '' ? '-' : this.flags;
    const duration = monoNow() - this.startedAt;
    const resBytes = this.resBytes + (this.response?.bytes ?? 0);
    ctx.telemetry.record(this.conn.peer, this.status, flags, this.grpcStatus, duration, this.reqBytes, resBytes);
    const streams = this.streams;
    for (let i = 0; i < streams.length; i++) streams[i]!.onDone?.(this.status, flags);
    if (ctx.accessLog.enabled) {
      const target = this.target ?? this.conn.target;
      ctx.accessLog.write({
        start_time: accessLogTime(wallNow() - duration),
        method: this.head.method,
        path: this.head.target,
        protocol: this.head.minor === 1 ? 'HTTP/1.1' : 'HTTP/1.0',
        authority: this.authority,
        response_code: this.status,
        response_flags: flags,
        grpc_status: this.grpcStatus,
        bytes_received: this.reqBytes,
        bytes_sent: resBytes,
        duration_ms: Math.round(duration * 1000) / 1000,
        upstream_host: this.lastEndpoint,
        upstream_cluster: this.cluster?.name ?? '-',
        upstream_attempts: this.attempts,
        route_name: this.route?.name ?? '-',
        request_id: requestIdOf(this.info, this.headers),
        ...exchangeContextFields(target, this.trace, this.headers, this.error),
      });
    }
  }
}
