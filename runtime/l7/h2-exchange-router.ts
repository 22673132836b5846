/**
 * The router of an h2c or gRPC exchange: timeout → retry (Envoy's policy, budget and gRPC statuses) → load balancing →
 * an upstream attempt (h2c, or HTTP/1.1 for HTTP/1 services). The attempt's answer is taken by h2-exchange; the state
 * it works on is h2-exchange-state's.
 */
import http2 from 'node:http2';
import { startH2Attempt, startHttp1Attempt, type AttemptRequest } from './h2-upstream-attempt.js';
import type { LocalReply } from './l7-filter.js';
import { requestHash } from './load-balancer.js';
import { L7_ERROR, localReply } from './local-reply.js';
import { applyHeaderOps, rewritePath } from './route-actions.js';
import { RouteTable, routeTableFor, type CompiledRoute } from './route-table.js';
import { answerVerdict, backoffMs, IDEMPOTENT_METHODS, isRetriableFailure, retriesGrpcStatus, RetrySlot, type AttemptFailure } from './retry-policy.js';
import { continueTrace } from './traceparent.js';
import type { HeaderList } from './header-list.js';
import { H2ExchangeState } from './h2-exchange-state.js';
import type { AttemptSink } from './h2-upstream-attempt.js';

const { NGHTTP2_CANCEL } = http2.constants;
export abstract class H2ExchangeRouter extends H2ExchangeState implements AttemptSink {
  abstract onResponse(status: number, headers: HeaderList, endStream: boolean): void;
  abstract onData(chunk: Buffer): void;
  abstract onTrailers(trailers: HeaderList): void;
  abstract onEnd(): void;
  abstract onFailure(kind: Exclude<AttemptFailure, 'timeout'>, message: string, rstCode: number): void;
  abstract onDrain(): void;

  protected dispatch(): void {
    if (this.phase === 'done') return;
    const { ctx, target } = this;
    if (this.rematchRoute && !this.rematch()) return;
    const route = this.route!;
    if (route.timeoutMs > 0 && this.timer === undefined) this.timer = setTimeout(() => this.onTimeout(), route.timeoutMs);
    const snapshot = ctx.state.current;
    const service = target.service === undefined ? undefined : (snapshot.serviceByName(target.service.key) ?? target.service);
    const port = target.servicePort?.port ?? target.originalDst.port;
    const backend = RouteTable.pickBackend(route, route.backends.length === 1 ? 0 : Math.random());
    const svc = backend?.service;
    const cluster =
      svc !== undefined ? ctx.clusters.forService(snapshot, svc, backend?.port ?? port, backend?.labels, route.loadBalancer) : ctx.clusters.forAddress(snapshot, target.originalDst.address, target.originalDst.port, target.workload);
    this.cluster = cluster;
    if (!this.requestStarted) {
      if (!cluster.tryStartRequest()) return this.reply(localReply(503, L7_ERROR.overflow, 'UO', `upstream ${cluster.name} is overloaded (max requests)`));
      this.requestStarted = true;
      this.requestCluster = cluster;
    }
    const hashOn = route.loadBalancer?.hashOn ?? cluster.lbConfig?.hashOn;
    const ep = cluster.pick(Date.now(), hashOn === undefined ? undefined : requestHash(hashOn, (n) => this.headers.get(n), target.source.address));
    if (ep === undefined) return this.reply(localReply(503, L7_ERROR.noHealthyUpstream, 'UH', `no healthy upstream for ${cluster.name}`));
    this.endpoint = ep;
    this.lastEndpoint = ep.key;
    if (this.info !== undefined) this.info.endpoint = ep;
    ep.activeRequests++;
    this.attempts++;
    this.phase = 'upstream';
    const retry = route.retry;
    this.holdForStatus = this.grpc && retry !== undefined && retriesGrpcStatus(retry);
    if (retry?.perTryTimeoutMs !== undefined) this.tryTimer = setTimeout(() => this.onTryTimeout(), retry.perTryTimeoutMs);
    const req = this.attemptRequest(route);
    const appProtocol = (svc ?? service)?.ports.find((p) => p.port === (backend?.port ?? port))?.appProtocol ?? target.servicePort?.appProtocol;
    // gRPC needs trailers end to end, so it always stays on HTTP/2.
    const h2 = this.grpc || appProtocol === 'http2' || appProtocol === 'grpc';
    const identity = target.upstreamIdentity;
    this.attempt = h2 ? startH2Attempt(this.pool, ep.address, ep.port, identity, cluster.connectTimeoutMs, req, this) : startHttp1Attempt(this.pool.http1(identity), ep.address, ep.port, req, this);
    this.body.feed(this.attempt);
  }

  /** Matches the route again after filters edited the request; false when none matches (answered 404). */
  protected rematch(): boolean {
    this.rematchRoute = false;
    const snapshot = this.ctx.state.current;
    const { target } = this;
    const service = target.service === undefined ? undefined : (snapshot.serviceByName(target.service.key) ?? target.service);
    const q = this.path.indexOf('?');
    const route = routeTableFor(snapshot, service, target.servicePort?.port ?? target.originalDst.port).match(this.method, q === -1 ? this.path : this.path.slice(0, q), this.headers);
    if (route === undefined) {
      this.reply(localReply(404, L7_ERROR.noRoute, 'NR', 'no route matched after a filter edited the request'));
      return false;
    }
    if (route !== this.route && route.requestHeaders !== undefined) applyHeaderOps(this.headers, route.requestHeaders);
    this.route = route;
    return true;
  }

  /** The request as it leaves: trace context, rewrites, attempt count, and a content-length matching a replaced body. */
  protected attemptRequest(route: CompiledRoute): AttemptRequest {
    const headers = this.headers;
    if (this.trace === undefined) {
      this.trace = continueTrace(headers.get('traceparent'));
      headers.set('traceparent', this.trace.header);
      const final = this.body.final;
      if (final !== undefined && headers.has('content-length')) headers.set('content-length', String(final.length));
    }
    // Envoy's x-envoy-attempt-count (Istio turns it on): lets the upstream tell a retry from a first try.
    if (route.retry !== undefined) headers.set('x-envoy-attempt-count', String(this.attempts));
    let path = this.path;
    if (route.rewriteUri !== undefined || route.rewriteRegex !== undefined) {
      const q = path.indexOf('?');
      path = rewritePath(route, q === -1 ? path : path.slice(0, q), path);
    }
    return { method: this.method, path, authority: route.rewriteAuthority ?? this.authority, headers, hasBody: this.body.present };
  }

  protected retryVerdict(): 'retry' | 'exhausted' | 'no' {
    return answerVerdict(this.route?.retry, this.status, this.grpcStatus, this.attempts, this.canReplay());
  }

  /** Never once response headers reached the client, nor without the whole request at hand to send again. */
  protected canReplay(): boolean {
    return this.response?.headSent !== true && this.body.replayable;
  }

  protected retryAfterAnswer(status: number): void {
    this.held = undefined;
    this.cancelAttempt();
    this.endAttempt(null);
    this.retryOrFail(localReply(status, L7_ERROR.upstreamReset, 'URX', 'upstream retries exhausted'));
  }

  protected attemptFailed(kind: AttemptFailure, message: string): void {
    const reply =
      kind === 'connect-failure'
        ? localReply(503, L7_ERROR.upstreamConnect, 'UF', `upstream connect error: ${message}`)
        : kind === 'timeout'
          ? localReply(504, L7_ERROR.upstreamTimeout, 'UT', 'upstream per-try timeout')
          : localReply(503, L7_ERROR.upstreamReset, 'UC', `upstream reset: ${message}`);
    // A refused stream was never processed (RFC 9113 §8.7): one free retry, as for HTTP/1's stale keep-alive connection.
    if (kind === 'refused-stream' && !this.retriedRefused && this.canReplay()) {
      this.retriedRefused = true;
      this.attempts--;
      return this.retry(0);
    }
    const r = this.route?.retry;
    // A reset after the upstream had the body may have had effects: only idempotent or body-less requests go again.
    const replayable = kind !== 'reset' || IDEMPOTENT_METHODS.has(this.method) || !this.body.sent;
    if (r !== undefined && isRetriableFailure(r, kind) && this.attempts <= r.attempts && this.canReplay() && replayable) return this.retryOrFail(reply);
    this.flags = reply.flag ?? '';
    this.reply(reply);
  }

  protected retryOrFail(reply: LocalReply): void {
    const r = this.route!.retry!;
    if (this.attempts > r.attempts) {
      this.flags = 'URX';
      return this.reply({ ...reply, flag: 'URX' });
    }
    if (!(this.retrySlot ??= new RetrySlot()).take(this.cluster!, r)) {
      this.flags = 'UO';
      return this.reply(localReply(503, L7_ERROR.overflow, 'UO', `retry budget of ${this.cluster!.name} exhausted`));
    }
    this.retry(backoffMs(r, this.attempts));
  }

  protected retry(delayMs: number): void {
    this.phase = 'upstream';
    this.status = 0;
    this.grpcStatus = '-';
    const go = (): void => {
      this.backoffTimer = undefined;
      if (this.phase !== 'done') this.dispatch();
    };
    if (delayMs === 0) go();
    else this.backoffTimer = setTimeout(go, delayMs);
  }

  protected onTimeout(): void {
    this.timer = undefined;
    if (this.phase === 'done') return;
    this.flags = 'UT';
    if (this.response?.headSent === true) {
      this.phase = 'done';
      this.body.stop();
      this.cancelAttempt();
      this.endAttempt(null);
      this.stream.close(NGHTTP2_CANCEL);
      return;
    }
    this.reply(localReply(504, L7_ERROR.upstreamTimeout, 'UT', 'upstream request timeout'));
  }

  protected onTryTimeout(): void {
    this.tryTimer = undefined;
    if (this.phase !== 'upstream' || this.attempt === undefined) return;
    this.held = undefined;
    this.cancelAttempt();
    this.endAttempt('local-failure');
    this.attemptFailed('timeout', 'per-try timeout');
  }
}
