/**
 * The state of one h2c or gRPC stream's exchange and how it ends: every field the stream's state machine keeps, the
 * local reply, an attempt's end, and completion (mirror, telemetry, access log).
 *
 * One state machine, built in layers, one concern per file, each seeing the state below it: this state →
 * h2-exchange-router (timeout, retries with budget, load balancing, the upstream attempt) → h2-exchange (the filter
 * chain, the request body's owner, which attempt's answer the client gets). The request body lives in H2RequestBody,
 * the committed response in H2ResponseWriter.
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
import type { H2ResponseWriter, ResponseFilters } from './h2-response-writer.js';
import type { UpstreamAttempt } from './h2-upstream-attempt.js';
import type { H2UpstreamPool } from './h2-upstream-pool.js';
import { peerLabels, type PeerLabels } from './http-telemetry.js';
import type { L7Context, L7Target } from './l7-context.js';
import type { FilterStatus, L7FilterStream, LocalReply } from './l7-filter.js';
import { accessLogTime, exchangeContextFields } from './http-access-log.js';
import { L7_ERROR, localReply } from './local-reply.js';
import type { CompiledRoute } from './route-table.js';
import type { RetrySlot } from './retry-policy.js';
import type { TraceContext } from './traceparent.js';
import { requestIdOf, type ExchangeRequestInfo } from './exchange-request-info.js';
import type { UpstreamCluster, UpstreamEndpoint } from './upstream-cluster.js';

const { NGHTTP2_INTERNAL_ERROR } = http2.constants;
const NO_RESPONSE_FILTERS: ResponseFilters = Object.freeze({ streams: [], whole: false, chunkHooks: false, trailerHooks: false });

/** 'upstream' covers connecting, waiting for and holding a response, and backoff; 'response' is committed to one. */
type Phase = 'filters' | 'upstream' | 'response' | 'done';

export abstract class H2ExchangeState implements RequestBodyOwner {
  abstract onStreamedChunk(chunk: Buffer, end: boolean): void;
  abstract onStreamedTrailers(trailers: HeaderList): Promise<void> | undefined;
  abstract onWholeBody(): void;
  abstract onTooLarge(): void;
  protected readonly startedAt = performance.now();
  protected readonly headers: HeaderList;
  protected method: string;
  protected path: string;
  protected authority: string;
  /** A filter edited the request (Envoy's clearRouteCache): the route is matched again before the first dispatch. */
  protected rematchRoute = false;
  protected readonly grpc: boolean;
  protected readonly body: H2RequestBody;
  protected phase: Phase = 'filters';
  protected route: CompiledRoute | undefined;
  protected streams: L7FilterStream[] = [];
  protected responseFilters: ResponseFilters = NO_RESPONSE_FILTERS;
  protected requestChunkHooks = false;
  protected requestTrailerHooks = false;
  protected headersDone = false;
  protected responseBodyReplacement: Buffer | undefined;
  protected status = 0;
  protected grpcStatus = '-';
  protected flags = '';
  protected error = '';
  protected cluster: UpstreamCluster | undefined;
  protected requestCluster: UpstreamCluster | undefined;
  protected retrySlot: RetrySlot | undefined;
  protected endpoint: UpstreamEndpoint | undefined;
  protected lastEndpoint = '-';
  /** What filters read about the request (and the upstream of the latest attempt); only with filters. */
  protected info: ExchangeRequestInfo | undefined;
  protected attempt: UpstreamAttempt | undefined;
  protected attempts = 0;
  protected requestStarted = false;
  protected retriedRefused = false;
  protected holdForStatus = false;
  /** A response held until its gRPC status is known (see the file comment). */
  protected held: { headers: HeaderList; endStream: boolean } | undefined;
  protected response: H2ResponseWriter | undefined;
  protected localBytes = 0;
  protected timer: NodeJS.Timeout | undefined;
  protected tryTimer: NodeJS.Timeout | undefined;
  protected backoffTimer: NodeJS.Timeout | undefined;
  protected trace: TraceContext | undefined;
  protected recorded = false;
  /** The client got the end of a local reply. */
  protected replied = false;

  constructor(
    readonly ctx: L7Context,
    readonly pool: H2UpstreamPool,
    readonly target: L7Target,
    readonly stream: http2.ServerHttp2Stream,
    raw: http2.IncomingHttpHeaders,
  ) {
    this.method = String(raw[':method'] ?? 'GET');
    this.path = String(raw[':path'] ?? '/');
    this.authority = String(raw[':authority'] ?? target.service?.hostname ?? '');
    this.headers = headerListFrom(raw);
    this.grpc = (this.headers.get('content-type') ?? '').startsWith('application/grpc');
    this.body = new H2RequestBody(stream, this, ctx.limits.maxBufferedBodyBytes);
  }

  /** Continues with `next` when a filter status is "continue", answers locally otherwise; handles paused (Promise) statuses. */
  settle(status: FilterStatus, next: () => void): void {
    if (status === undefined) return next();
    if (!(status instanceof Promise)) return this.reply(status);
    status.then(
      (r) => {
        if (this.phase === 'done') return;
        if (r === undefined) next();
        else this.reply(r);
      },
      (err: unknown) => {
        if (this.phase === 'done') return;
        this.error = String(weftErrorOf(err)?.code ?? 'filter failed');
        this.reply(localReply(500, L7_ERROR.pluginFailed, 'UAEX', 'a filter failed'));
      },
    );
  }

  replacedResponseBody(): Buffer | undefined {
    return this.responseBodyReplacement;
  }

  currentAttempt(): UpstreamAttempt | undefined {
    return this.attempt;
  }

  protected clearTryTimer(): void {
    if (this.tryTimer !== undefined) clearTimeout(this.tryTimer);
    this.tryTimer = undefined;
  }

  protected cancelAttempt(): void {
    const a = this.attempt;
    this.attempt = undefined;
    a?.cancel();
  }

  /** Ends the accounting of the current attempt on its endpoint. */
  protected endAttempt(outcome: 'success' | 'local-failure' | null): void {
    const ep = this.endpoint;
    if (ep === undefined) return;
    ep.activeRequests--;
    if (outcome === 'local-failure') this.cluster?.report(ep, 'local-failure', Date.now());
    this.endpoint = undefined;
  }

  /** Answers the client with a local reply (or resets the stream once a response is under way). */
  reply(reply: LocalReply): void {
    const { stream } = this;
    if (this.phase === 'done') return;
    this.phase = 'done';
    this.body.stop();
    this.cancelAttempt();
    this.endAttempt(null);
    this.flags ||= reply.flag ?? '';
    if (this.error === '') this.error = reply.code ?? '';
    this.status = reply.status;
    if (stream.destroyed) return;
    if (this.response?.headSent === true || reply.reset === true) {
      stream.close(NGHTTP2_INTERNAL_ERROR);
      return;
    }
    const headers: http2.OutgoingHttpHeaders = {};
    for (const [n, v] of reply.headers ?? []) headers[n.toLowerCase()] = v;
    if (reply.code !== undefined) headers['x-weft-error'] = reply.code;
    this.replied = true;
    if (this.grpc) {
      // gRPC clients read errors from a trailers-only response, never from the HTTP status.
      this.grpcStatus = String(grpcStatusFor(reply.status));
      stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': this.grpcStatus, 'grpc-message': encodeURIComponent(String(reply.body ?? '').trim()), ...headers }, { endStream: true });
      return;
    }
    const body = reply.body === undefined ? '' : reply.body;
    stream.respond({ ':status': reply.status, 'content-type': 'text/plain; charset=utf-8', ...headers });
    this.localBytes += Buffer.byteLength(body);
    stream.end(body);
  }

  protected onDownstreamClose(): void {
    if (this.recorded) return;
    // The client left (reset or closed) before its answer was complete.
    if (!this.replied && this.response?.ended !== true) this.flags ||= 'DC';
    this.phase = 'done';
    this.body.stop();
    if (this.timer !== undefined) clearTimeout(this.timer);
    if (this.backoffTimer !== undefined) clearTimeout(this.backoffTimer);
    this.clearTryTimer();
    this.cancelAttempt();
    this.endAttempt(null);
    this.recorded = true;
    if (this.requestStarted) this.requestCluster?.endRequest();
    this.retrySlot?.release();
    if (this.route?.mirror !== undefined) this.mirror(this.route.mirror);
    this.record();
  }

  /** Sends the shadow copy when the sampled percentage says so and the whole body is still at hand. */
  protected mirror(m: NonNullable<CompiledRoute['mirror']>): void {
    if (m.percent < 100 && Math.random() * 100 >= m.percent) return;
    const body = this.body.copy();
    const b = m.backend;
    if (body === null || b.service === undefined) return;
    const { ctx, target } = this;
    const port = b.port ?? target.servicePort?.port ?? target.originalDst.port;
    const cluster = ctx.clusters.forService(ctx.state.current, b.service, port, b.labels, undefined);
    const appProtocol = b.service.ports.find((p) => p.port === port)?.appProtocol;
    const http2Mirror = this.grpc || appProtocol === 'http2' || appProtocol === 'grpc';
    ctx.mirror.send(cluster, { method: this.method, target: this.path, authority: this.authority, headers: this.headers.flat, body, http2: http2Mirror, ...(target.upstreamIdentity === undefined ? {} : { identity: target.upstreamIdentity }) });
  }

  protected record(): void {
    const { ctx, target } = this;
    const flags = this.flags === '' ? '-' : this.flags;
    const duration = performance.now() - this.startedAt;
    const sent = this.localBytes + (this.response?.bytes ?? 0);
    ctx.telemetry.record(peerFor(ctx, target, this.grpc), this.status, flags, this.grpcStatus, duration, this.body.bytes, sent);
    for (const s of this.streams) s.onDone?.(this.status, flags);
    if (!ctx.accessLog.enabled) return;
    ctx.accessLog.write({
      start_time: accessLogTime(Date.now() - duration),
      method: this.method,
      path: this.path,
      protocol: 'HTTP/2',
      authority: this.authority,
      response_code: this.status,
      response_flags: flags,
      grpc_status: this.grpcStatus,
      bytes_received: this.body.bytes,
      bytes_sent: sent,
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

/** Peer labels per connection target and protocol, computed once (they feed the telemetry series cache). */
const peers = new WeakMap<L7Target, { http?: PeerLabels; grpc?: PeerLabels }>();
function peerFor(ctx: L7Context, target: L7Target, grpc: boolean): PeerLabels {
  let entry = peers.get(target);
  if (entry === undefined) peers.set(target, (entry = {}));
  const key = grpc ? 'grpc' : 'http';
  return (entry[key] ??= peerLabels({ source: ctx.state.current.workloadByIp(target.source.address), sourcePrincipal: target.sourceIdentity, service: target.service, destination: target.workload, protocol: key }));
}
