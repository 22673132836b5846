/**
 * The router of an HTTP/1.x exchange: timeout → retry → load balancing → pooled upstream connection, the request head
 * written upstream, per-try timeouts and the retry decisions (Envoy's retry policy and budget), and CONNECT tunnels.
 * The upstream's answer is read by http1-exchange-response; the state it works on is http1-exchange-state's.
 */
import { appendedFieldLines, requestHeadText } from './http1-head-writer.js';
import { splicedHead } from './http1-head-splice.js';
import { RouteTable } from './route-table.js';
import type { ResponseHead } from './http1-head-parser.js';
import { isConnecting, type Http1UpstreamConnection } from './http1-pool.js';
import type { LocalReply } from './l7-filter.js';
import { L7_ERROR, localReply } from './local-reply.js';
import { continueTraceLine } from './traceparent.js';
import type { UpstreamCluster, UpstreamEndpoint } from './upstream-cluster.js';
import { requestHash } from './load-balancer.js';
import { applyHeaderOps, rewritePath } from './route-actions.js';
import { backoffMs, IDEMPOTENT_METHODS, isRetriableAnswer, isRetriableFailure, type AttemptFailure } from './retry-policy.js';
import { spliceTunnel } from './byte-tunnel.js';
import { Http1ExchangeState, NO_BYTES } from './http1-exchange-state.js';
import type { PoolWaiter, UpstreamOwner } from './http1-pool.js';
import { wallNow } from './loop-clock.js';

export abstract class Http1ExchangeRouter extends Http1ExchangeState implements UpstreamOwner, PoolWaiter {
  abstract onUpstreamData(chunk: Buffer): void;
  abstract onUpstreamClose(error: Error | undefined): void;
  abstract onUpstreamDrain(): void;

  protected dispatch(): void {
    if (this.phase === 'done') return;
    if (this.rematchRoute) {
      this.rematchRoute = false;
      const rematched = this.conn.routeTable.match(this.head.method, this.path, this.headers);
      if (rematched === undefined) return this.replyLocal(localReply(404, L7_ERROR.noRoute, 'NR', 'no route matched after a filter edited the request'));
      this.route = rematched;
      // A filter that turned the request into a CONNECT meets the same gate as a client that sent one.
      if (this.head.method === 'CONNECT' && !rematched.connect) return this.refuseConnect();
    }
    const route = this.route!;
    if (route.timeoutMs > 0 && this.timer === null) this.timer = setTimeout(() => this.onTimeout(), route.timeoutMs);
    const ctx = this.conn.ctx;
    const snapshot = ctx.state.current;
    const target = this.conn.currentTarget(snapshot);
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
    this.cluster = cluster;
    if (!this.retrying && !cluster.tryStartRequest()) return this.replyLocal(localReply(503, L7_ERROR.overflow, 'UO', `upstream ${cluster.name} is overloaded (max requests)`));
    if (!this.requestStarted) this.requestCluster = cluster;
    this.requestStarted = true;
    const now = wallNow();
    const hashOn = route.loadBalancer?.hashOn ?? cluster.lbConfig?.hashOn;
    const hash = hashOn === undefined ? undefined : requestHash(hashOn, (n) => this.headers.get(n), target.source.address);
    const ep = cluster.pick(now, hash);
    if (ep === undefined) return this.replyLocal(localReply(503, L7_ERROR.noHealthyUpstream, 'UH', `no healthy upstream for ${cluster.name}`));
    this.endpoint = ep;
    if (this.info !== undefined) this.info.endpoint = ep;
    this.lastEndpoint = ep.key;
    ep.activeRequests++;
    this.attempts++;
    if (this.head.method === 'CONNECT') return this.startConnectTunnel(ep);
    this.phase = 'connecting';
    this.waiter = this;
    if (!ep.poolFor(target.upstreamIdentity).acquire(cluster, this)) {
      this.waiter = null;
      ep.activeRequests--;
      this.replyLocal(localReply(503, L7_ERROR.overflow, 'UO', `upstream ${cluster.name} is overloaded (pending requests)`));
    }
  }

  onConnection(c: Http1UpstreamConnection | Error): void {
    this.waiter = null;
    if (this.phase !== 'connecting') {
      // The exchange ended while waiting (timeout, client gone): hand the connection straight back.
      if (!(c instanceof Error)) c.pool.release(c, true, this.cluster!);
      return;
    }
    if (c instanceof Error) {
      this.endAttempt('local-failure');
      return this.attemptFailed('connect-failure', 'UF', localReply(503, L7_ERROR.upstreamConnect, 'UF', `upstream connect error: ${c.message}`));
    }
    this.upstream = c;
    c.owner = this;
    c.requests++;
    this.phase = 'waiting';
    const perTry = this.route?.retry?.perTryTimeoutMs;
    if (perTry !== undefined) this.tryTimer = setTimeout(() => this.onTryTimeout(), perTry);
    this.writeRequestHead(c);
  }

  protected writeRequestHead(c: Http1UpstreamConnection): void {
    const h = this.head;
    const route = this.route!;
    const headers = this.headers;
    if (this.attempts === 1 && route.requestHeaders !== undefined) applyHeaderOps(headers, route.requestHeaders);
    let target = h.target;
    if (route.rewriteUri !== undefined || route.rewriteRegex !== undefined) target = rewritePath(route, this.path, target);
    const trace = (this.trace ??= continueTraceLine(headers.get('traceparent')));
    const body = this.replacedRequestBody;
    const io = c.io;
    const raw = h.verbatim;
    // The head's own bytes, with the original fields filters or the route removed cut out and those they replaced
    // rewritten in place, when the request line and framing stay as they came.
    const spliced = raw === undefined || body !== undefined || target !== h.target || route.rewriteAuthority !== undefined || this.requestLineEdited ? undefined : splicedHead(raw, headers, true);
    const appended = spliced === undefined ? undefined : appendedFieldLines(headers, true, headers.addedFrom);
    if (appended !== undefined) {
      // It leaves with the fields filters added and the trace context as lines before its blank line (no re-serialization).
      io.writeSpliced(spliced!, appended === '' ? trace.line : appended + trace.line, undefined);
    } else {
      const text = requestHeadText(h, headers, { target, rewriteAuthority: route.rewriteAuthority, authority: this.authority, traceparent: trace.header, replacedBodyLength: body?.length });
      if (body !== undefined) return void io.writeHead(text, body);
      io.write(text);
    }
    // Indexed loops: a for-of over the shared frozen empty lists allocates an iterator and its results per request.
    const queued = this.attempts > 1 && this.reqRetained !== null ? this.reqRetained : this.reqQueue;
    for (let i = 0; i < queued.length; i++) io.write(queued[i]!);
    this.reqQueue = NO_BYTES;
  }

  /** 'exhausted' forwards the upstream's answer but flags URX, as Envoy does when the retry limit is hit. */
  protected retryVerdict(res: ResponseHead): 'retry' | 'exhausted' | 'no' {
    const r = this.route?.retry;
    if (r === undefined || !isRetriableAnswer(r, res.status, this.grpcStatus)) return 'no';
    if (this.canRetry(r.attempts)) return 'retry';
    return this.attempts > r.attempts ? 'exhausted' : 'no';
  }

  /** Never retry once bytes reached the client, or a non-idempotent request whose body is gone. */
  protected canRetry(attempts: number): boolean {
    if (this.responseStarted || this.attempts > attempts) return false;
    if (!this.reqComplete) return false;
    if (this.reqRetained === null && this.replacedRequestBody === undefined && this.reqBytes > this.head.headBytes) return false;
    return true;
  }

  protected attemptFailed(kind: AttemptFailure, flag: string, reply: LocalReply): void {
    const r = this.route?.retry;
    // A reused keep-alive connection the upstream had already closed: retry once, as every HTTP client does.
    const stale = kind === 'reset' && this.attempts === 1 && (this.upstreamRequests ?? 0) > 1 && IDEMPOTENT_METHODS.has(this.head.method) && this.canRetry(1);
    if (stale && !this.retriedStale) {
      this.retriedStale = true;
      this.attempts--;
      return this.retry(0);
    }
    if (r !== undefined && isRetriableFailure(r, kind) && this.canRetry(r.attempts) && (kind !== 'reset' || IDEMPOTENT_METHODS.has(this.head.method) || this.reqBytes === this.head.headBytes)) {
      return this.retryOrFail(kind, reply);
    }
    this.flags = flag;
    this.replyLocal(reply);
  }

  protected retryOrFail(_kind: string, reply: LocalReply): void {
    const r = this.route!.retry!;
    if (this.attempts > r.attempts) {
      this.flags = 'URX';
      return this.replyLocal({ ...reply, flag: 'URX' });
    }
    // Envoy counts a retry as active until the retried request finishes; one exchange holds at most one slot.
    if (this.retryHeld) {
      this.retryCluster?.endRetry();
      this.retryHeld = false;
    }
    if (!this.cluster!.tryStartRetry(r.budgetPercent, r.minRetryConcurrency)) {
      this.flags = 'UO';
      return this.replyLocal(localReply(503, L7_ERROR.overflow, 'UO', `retry budget of ${this.cluster!.name} exhausted`));
    }
    this.retryHeld = true;
    this.retryCluster = this.cluster;
    this.retry(backoffMs(r, this.attempts));
  }

  protected retry(delayMs: number): void {
    this.phase = 'filters';
    this.resBuf = null;
    this.res = undefined;
    this.grpcStatus = '-';
    this.retrying = true;
    const go = (): void => {
      this.backoffTimer = null;
      if (this.phase === 'done') return;
      this.dispatch();
    };
    if (delayMs === 0) go();
    else {
      const t = setTimeout(go, delayMs);
      this.backoffTimer = t;
    }
  }

  protected onTimeout(): void {
    this.timer = null;
    if (this.phase === 'done') return;
    this.flags = 'UT';
    if (this.responseStarted) {
      this.discardUpstream();
      this.keepAlive = false;
      this.conn.io.destroy();
      this.complete();
      return;
    }
    this.discardUpstream();
    this.replyLocal(localReply(504, L7_ERROR.upstreamTimeout, 'UT', 'upstream request timeout'));
  }

  protected onTryTimeout(): void {
    this.tryTimer = null;
    if (this.phase !== 'waiting') return;
    this.endAttempt('local-failure');
    this.discardUpstream();
    this.attemptFailed('timeout', 'UT', localReply(504, L7_ERROR.upstreamTimeout, 'UT', 'upstream per-try timeout'));
  }

  /** CONNECT (RFC 9110 §9.3.6): a raw TCP tunnel to the picked endpoint once the chain allowed it. */
  protected startConnectTunnel(ep: UpstreamEndpoint): void {
    this.phase = 'connecting';
    const up = this.conn.ctx.connect(ep.address, ep.port, this.conn.target.upstreamIdentity);
    const fail = (): void => {
      up.destroy();
      this.endAttempt('local-failure');
      this.replyLocal(localReply(503, L7_ERROR.upstreamConnect, 'UF', `upstream connect error: ${ep.key}`));
    };
    up.once('error', fail);
    const onReady = (): void => {
      up.off('error', fail);
      this.clearTimers();
      this.phase = 'done';
      this.resStarted = true;
      this.status = 200;
      spliceTunnel(this.conn.io.release(), up, ['HTTP/1.1 200 Connection Established\r\n\r\n'], this.conn.takeBuffered());
      this.endAttempt('success');
      this.record();
    };
    if (isConnecting(up)) up.once('connect', onReady);
    else process.nextTick(onReady);
  }
}
