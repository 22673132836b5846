/** The downstream side of cleartext HTTP/2 (h2c) and gRPC: each stream runs the same chain as HTTP/1 (route, filters, breakers, load balancing) and is forwarded on a pooled h2 session, trailers included; rapid-reset and header floods end the session with GOAWAY. */
import http2 from 'node:http2';
import { PassThrough, type Duplex } from 'node:stream';
import { HeaderList } from './header-list.js';
import { applyHeaderOps } from './route-actions.js';
import type { HeaderOpsConfig } from '../config/l7-config-schema.js';
import { H2UpstreamPool } from './h2-upstream-pool.js';
import type { ConnectFn } from './http1-pool.js';
import { peerLabels, type PeerLabels } from './http-telemetry.js';
import type { L7Context, L7Target } from './l7-context.js';
import { onRequestHeadersHook, onResponseHeadersHook, onResponseTrailersHook, runFilterHook, type FilterStatus, type L7FilterStream, type LocalReply } from './l7-filter.js';
import { requestHash } from './load-balancer.js';
import { L7_ERROR, localReply } from './local-reply.js';
import { RouteTable, routeTableFor } from './route-table.js';
import { continueTrace, newRequestId } from './traceparent.js';
import type { UpstreamCluster, UpstreamEndpoint } from './upstream-cluster.js';

const { NGHTTP2_CANCEL, NGHTTP2_ENHANCE_YOUR_CALM, NGHTTP2_REFUSED_STREAM } = http2.constants;
/** Connection-specific fields are forbidden in HTTP/2 (RFC 9113 §8.2.2). */
const H2_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'host']);

export interface H2cServer {
  handle(socket: Duplex, target: L7Target, firstBytes: Buffer): void;
  close(): Promise<void>;
  readonly sessions: number;
  readonly upstreamSessions: number;
}

/** gRPC status for a proxy-generated HTTP status (gRPC's HTTP-to-status mapping, doc/http-grpc-status-mapping.md). */
function grpcStatusFor(status: number): number {
  if (status === 400) return 13;
  if (status === 401) return 16;
  if (status === 403) return 7;
  if (status === 404) return 12;
  if (status === 429 || status === 502 || status === 503 || status === 504) return 14;
  return 2;
}

export function createH2cServer(ctx: L7Context, connect: ConnectFn): H2cServer {
  const server = http2.createServer({
    maxSessionRejectedStreams: 100,
    maxHeaderListPairs: ctx.limits.maxHeaders,
    maxSessionInvalidFrames: 100,
    settings: { maxConcurrentStreams: ctx.limits.h2MaxConcurrentStreams, maxHeaderListSize: ctx.limits.maxRequestHeadersBytes, enablePush: false },
  });
  const pool = new H2UpstreamPool(connect);
  const sessions = new Set<http2.ServerHttp2Session>();
  const targets = new WeakMap<http2.ServerHttp2Session, L7Target>();
  /** The 'session' event fires synchronously inside emit('connection'), so the target handed to handle() is still here. */
  let arriving: L7Target | undefined;

  server.on('session', (session: http2.ServerHttp2Session) => {
    sessions.add(session);
    if (arriving !== undefined) targets.set(session, arriving);
    session.on('close', () => sessions.delete(session));
    session.on('error', () => session.destroy());
    // Rapid reset (CVE-2023-44487): streams the client cancels before their response count against a per-second budget.
    let windowStart = Date.now();
    let resets = 0;
    session.on('stream', (stream: http2.ServerHttp2Stream) => {
      stream.on('close', () => {
        if (stream.rstCode === 0 || stream.headersSent) return;
        const now = Date.now();
        if (now - windowStart > 1000) {
          windowStart = now;
          resets = 0;
        }
        if (++resets > ctx.limits.h2MaxResetsPerSecond && !session.destroyed) {
          session.goaway(NGHTTP2_ENHANCE_YOUR_CALM);
          session.destroy();
        }
      });
    });
    session.on('frameError', () => session.destroy());
  });

  server.on('stream', (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => {
    const target = stream.session === undefined ? undefined : targets.get(stream.session as http2.ServerHttp2Session);
    if (target === undefined) {
      stream.close(NGHTTP2_REFUSED_STREAM);
      return;
    }
    new H2Exchange(ctx, pool, target, stream, headers).start();
  });

  return {
    handle(socket, target, firstBytes) {
      socket.pause();
      if (firstBytes.length > 0) socket.unshift(firstBytes);
      arriving = target;
      try {
        server.emit('connection', socket);
      } finally {
        arriving = undefined;
      }
    },
    get sessions() {
      return sessions.size;
    },
    get upstreamSessions() {
      return pool.size;
    },
    async close() {
      for (const s of sessions) s.destroy();
      pool.closeAll();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

class H2Exchange {
  readonly #start = performance.now();
  readonly #headers: HeaderList;
  readonly #method: string;
  readonly #path: string;
  readonly #authority: string;
  readonly #grpc: boolean;
  #streams: L7FilterStream[] = [];
  #status = 0;
  #grpcStatus = '-';
  #flags = '';
  #error = '';
  #cluster: UpstreamCluster | undefined;
  #endpoint: UpstreamEndpoint | undefined;
  #upstream: http2.ClientHttp2Stream | undefined;
  #releaseSession: (() => void) | undefined;
  #timer: NodeJS.Timeout | undefined;
  #done = false;
  #reqBytes = 0;
  #resBytes = 0;
  #routeName = '-';
  #traceId = '-';
  #requestStarted = false;

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
    const flat: string[] = [];
    for (const [name, value] of Object.entries(raw)) {
      if (name.startsWith(':') || value === undefined || H2_HOP.has(name)) continue;
      if (Array.isArray(value)) for (const v of value) flat.push(name, v);
      else flat.push(name, String(value));
    }
    this.#headers = new HeaderList(flat);
    this.#grpc = (this.#headers.get('content-type') ?? '').startsWith('application/grpc');
  }

  start(): void {
    const { ctx, target, stream } = this;
    stream.on('error', () => undefined);
    stream.on('close', () => {
      if (!this.#done) {
        this.#flags ||= 'DC';
        this.#upstream?.close(NGHTTP2_CANCEL);
        this.#finish();
      }
    });
    const snapshot = ctx.state.current;
    const service = target.service === undefined ? undefined : (snapshot.serviceByName(target.service.key) ?? target.service);
    const port = target.servicePort?.port ?? target.originalDst.port;
    const q = this.#path.indexOf('?');
    const route = routeTableFor(snapshot, service, port).match(this.#method, q === -1 ? this.#path : this.#path.slice(0, q), this.#headers);
    if (route === undefined) return this.#reply(localReply(404, L7_ERROR.noRoute, 'NR', 'no route matched'));
    this.#routeName = route.name;
    if (route.requestHeaders !== undefined) applyHeaderOps(this.#headers, route.requestHeaders);
    const current = { ...target, service };
    const filters = ctx.filtersFor(snapshot, current);
    const info = {
      method: this.#method,
      path: this.#path,
      authority: this.#authority,
      protocol: 'HTTP/2',
      sourceAddress: target.source.address,
      sourceIdentity: target.sourceIdentity,
      destinationService: service?.hostname,
      requestId: this.#headers.get('x-request-id') ?? newRequestId(),
    };
    const noBody = { replaceRequestBody: (): void => undefined, replaceResponseBody: (): void => undefined };
    for (const f of filters) {
      const s = f.start(info, noBody);
      if (s !== undefined) this.#streams.push(s);
    }
    this.#settle(runFilterHook(this.#streams, 0, onRequestHeadersHook, this.#headers, stream.endAfterHeaders), () => {
      const backend = RouteTable.pickBackend(route, Math.random());
      const svc = backend?.service;
      const cluster =
        svc !== undefined ? ctx.clusters.forService(snapshot, svc, backend?.port ?? port, backend?.labels, route.loadBalancer) : ctx.clusters.forAddress(snapshot, target.originalDst.address, target.originalDst.port, target.workload);
      this.#cluster = cluster;
      if (!cluster.tryStartRequest()) return this.#reply(localReply(503, L7_ERROR.overflow, 'UO', `upstream ${cluster.name} is overloaded (max requests)`));
      this.#requestStarted = true;
      const hashOn = route.loadBalancer?.hashOn ?? cluster.lbConfig?.hashOn;
      const ep = cluster.pick(Date.now(), hashOn === undefined ? undefined : requestHash(hashOn, (n) => this.#headers.get(n), target.source.address));
      if (ep === undefined) return this.#reply(localReply(503, L7_ERROR.noHealthyUpstream, 'UH', `no healthy upstream for ${cluster.name}`));
      this.#endpoint = ep;
      ep.activeRequests++;
      if (route.timeoutMs > 0) this.#timer = setTimeout(() => this.#onTimeout(), route.timeoutMs);
      const appProtocol = (svc ?? service)?.ports.find((p) => p.port === (backend?.port ?? port))?.appProtocol ?? target.servicePort?.appProtocol;
      // gRPC needs trailers end to end, so it always stays on HTTP/2.
      if (this.#grpc || appProtocol === 'http2' || appProtocol === 'grpc') this.#forward(ep, cluster, route.responseHeaders);
      else this.#forwardHttp1(ep, cluster, route.responseHeaders);
    });
  }

  #settle(status: FilterStatus, next: () => void): void {
    if (status === undefined) return next();
    if (!(status instanceof Promise)) return this.#reply(status);
    status.then(
      (r) => (this.#done ? undefined : r === undefined ? next() : this.#reply(r)),
      () => this.#reply(localReply(500, L7_ERROR.pluginFailed, 'UAEX', 'a filter failed')),
    );
  }

  #forward(ep: UpstreamEndpoint, cluster: UpstreamCluster, responseOps: HeaderOpsConfig | undefined): void {
    const { stream } = this;
    const trace = continueTrace(this.#headers.get('traceparent'));
    this.#traceId = trace.traceId;
    this.#headers.set('traceparent', trace.header);
    const out: http2.OutgoingHttpHeaders = { ':method': this.#method, ':path': this.#path, ':authority': this.#authority, ':scheme': 'http' };
    for (const [n, v] of this.#headers.pairs()) {
      const prev = out[n];
      out[n] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [String(prev), v];
    }
    const { session, done } = this.pool.acquire(ep.address, ep.port, cluster.connectTimeoutMs);
    this.#releaseSession = done;
    let up: http2.ClientHttp2Stream;
    try {
      up = session.request(out, { endStream: stream.endAfterHeaders });
    } catch (err) {
      done();
      return this.#upstreamFailed(`upstream h2 request failed: ${(err as Error).message}`, 'UF');
    }
    this.#upstream = up;
    let trailers: http2.OutgoingHttpHeaders | undefined;
    stream.on('data', (c: Buffer) => (this.#reqBytes += c.length));
    if (!stream.endAfterHeaders) stream.pipe(up);
    up.on('response', (h, flags: number) => {
      // A trailers-only response (gRPC errors) ends with its headers: forward it the same way.
      const endStream = (flags & http2.constants.NGHTTP2_FLAG_END_STREAM) !== 0;
      const status = Number(h[':status'] ?? 502);
      this.#status = status;
      const list = new HeaderList();
      for (const [n, v] of Object.entries(h)) {
        if (n.startsWith(':') || v === undefined || H2_HOP.has(n)) continue;
        for (const one of Array.isArray(v) ? v : [String(v)]) list.add(n, one);
      }
      const gs = list.get('grpc-status');
      if (gs !== undefined) this.#grpcStatus = gs;
      cluster.report(ep, status >= 500 ? (status >= 502 && status <= 504 ? 'gateway' : '5xx') : 'success', Date.now());
      if (responseOps !== undefined) applyHeaderOps(list, responseOps);
      const send = (): void => {
        if (this.#done || stream.destroyed) return;
        const headers: http2.OutgoingHttpHeaders = { ':status': status };
        for (const [n, v] of list.pairs()) {
          const prev = headers[n];
          headers[n] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [String(prev), v];
        }
        if (endStream) {
          stream.respond(headers, { endStream: true });
          return;
        }
        // Only gRPC-style exchanges carry trailers; waiting for them otherwise would end plain responses with RST_STREAM.
        const wantsTrailers = this.#grpc || this.#headers.get('te') === 'trailers';
        stream.respond(headers, { waitForTrailers: wantsTrailers });
        up.on('data', (c: Buffer) => (this.#resBytes += c.length));
        up.pipe(stream);
      };
      this.#settle(runFilterHook(this.#streams, 0, onResponseHeadersHook, status, list, false), send);
    });
    // Filters see (and may edit) trailers before they go out; a paused filter holds them until it resumes.
    let trailersReady: Promise<unknown> | undefined;
    up.on('trailers', (t: http2.IncomingHttpHeaders) => {
      const list = new HeaderList();
      for (const [n, v] of Object.entries(t)) {
        if (n.startsWith(':') || v === undefined || v === null) continue;
        for (const one of Array.isArray(v) ? v : [String(v)]) list.add(n, one);
      }
      const gs = list.get('grpc-status');
      if (gs !== undefined) this.#grpcStatus = gs;
      const toObject = (): void => {
        trailers = {};
        for (const [n, v] of list.pairs()) {
          const prev = trailers[n];
          trailers[n] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [String(prev), v];
        }
      };
      const status = runFilterHook(this.#streams, 0, onResponseTrailersHook, list);
      if (status instanceof Promise) trailersReady = status.then(toObject, toObject);
      else toObject();
    });
    stream.on('wantTrailers', () => {
      const send = (): void => {
        try {
          stream.sendTrailers(trailers ?? {});
        } catch {
          stream.close();
        }
      };
      if (trailersReady === undefined) send();
      else void trailersReady.then(send);
    });
    up.on('error', (err: Error) => {
      if (!stream.headersSent) return this.#upstreamFailed(`upstream h2 stream failed: ${err.message}`, 'UF');
      this.#flags ||= 'UC';
      stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
    });
    up.on('close', () => {
      this.#releaseSession?.();
      this.#releaseSession = undefined;
      if (!stream.headersSent && !this.#done) return this.#upstreamFailed('upstream reset the stream', 'UC');
      if (up.rstCode !== 0 && up.rstCode !== undefined && !stream.destroyed && !this.#done) stream.close(up.rstCode);
    });
    stream.on('close', () => this.#finish());
  }

  /** HTTP/2 client, HTTP/1.1 service: the request goes out through undici, the response comes back as h2 frames. */
  #forwardHttp1(ep: UpstreamEndpoint, cluster: UpstreamCluster, responseOps: HeaderOpsConfig | undefined): void {
    const { stream } = this;
    const trace = continueTrace(this.#headers.get('traceparent'));
    this.#traceId = trace.traceId;
    this.#headers.set('traceparent', trace.header);
    const headers: Record<string, string> = {};
    for (const [n, v] of this.#headers.pairs()) if (n !== 'te') headers[n] = headers[n] === undefined ? v : `${headers[n]}, ${v}`;
    headers.host = this.#authority;
    const abort = new AbortController();
    stream.once('close', () => abort.abort());
    // undici starts reading only once connected: the body waits in a PassThrough, counted as it passes.
    let body: PassThrough | undefined;
    if (!stream.endAfterHeaders) {
      body = new PassThrough();
      stream.on('data', (c: Buffer) => (this.#reqBytes += c.length));
      stream.pipe(body);
    }
    const origin = ep.address.includes(':') ? `http://[${ep.address}]:${ep.port}` : `http://${ep.address}:${ep.port}`;
    this.pool.http1
      .request({ origin, path: this.#path, method: this.#method, headers, body, signal: abort.signal, headersTimeout: 0, bodyTimeout: 0 })
      .then((res) => {
        const status = res.statusCode;
        this.#status = status;
        cluster.report(ep, status >= 500 ? (status >= 502 && status <= 504 ? 'gateway' : '5xx') : 'success', Date.now());
        const list = new HeaderList();
        for (const [n, v] of Object.entries(res.headers)) {
          if (v === undefined || H2_HOP.has(n)) continue;
          for (const one of Array.isArray(v) ? v : [v]) list.add(n, one);
        }
        if (responseOps !== undefined) applyHeaderOps(list, responseOps);
        this.#settle(runFilterHook(this.#streams, 0, onResponseHeadersHook, status, list, false), () => {
          if (this.#done || stream.destroyed) return void res.body.destroy();
          const out: http2.OutgoingHttpHeaders = { ':status': status };
          for (const [n, v] of list.pairs()) {
            const prev = out[n];
            out[n] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [String(prev), v];
          }
          stream.respond(out);
          res.body.on('data', (c: Buffer) => (this.#resBytes += c.length));
          res.body.on('error', () => stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR));
          res.body.pipe(stream);
        });
      })
      .catch((err: unknown) => {
        if (this.#done) return;
        this.#upstreamFailed(`upstream HTTP/1.1 request failed: ${(err as Error).message}`, 'UF');
      });
    stream.on('close', () => this.#finish());
  }

  #upstreamFailed(message: string, flag: string): void {
    if (this.#endpoint !== undefined) this.#cluster?.report(this.#endpoint, 'local-failure', Date.now());
    this.#reply(localReply(503, flag === 'UF' ? L7_ERROR.upstreamConnect : L7_ERROR.upstreamReset, flag, message));
  }

  #onTimeout(): void {
    this.#timer = undefined;
    if (this.#done) return;
    this.#upstream?.close(NGHTTP2_CANCEL);
    if (this.stream.headersSent) {
      this.#flags = 'UT';
      this.stream.close(NGHTTP2_CANCEL);
      return;
    }
    this.#reply(localReply(504, L7_ERROR.upstreamTimeout, 'UT', 'upstream request timeout'));
  }

  #reply(reply: LocalReply): void {
    const { stream } = this;
    if (this.#done || stream.destroyed) return;
    this.#flags ||= reply.flag ?? '';
    this.#error = reply.code ?? '';
    this.#status = reply.status;
    if (stream.headersSent || reply.reset === true) {
      stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
      return;
    }
    const headers: http2.OutgoingHttpHeaders = {};
    for (const [n, v] of reply.headers ?? []) headers[n.toLowerCase()] = v;
    if (reply.code !== undefined) headers['x-weft-error'] = reply.code;
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

  #finish(): void {
    if (this.#done) return;
    this.#done = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    if (this.#endpoint !== undefined) this.#endpoint.activeRequests--;
    if (this.#requestStarted) this.#cluster?.endRequest();
    this.#releaseSession?.();
    const flags = this.#flags === '' ? '-' : this.#flags;
    const duration = performance.now() - this.#start;
    const peer = peerFor(this.ctx, this.target, this.#grpc);
    this.ctx.telemetry.record(peer, this.#status, flags, this.#grpcStatus, duration, this.#reqBytes, this.#resBytes);
    for (const s of this.#streams) s.onDone?.(this.#status, flags);
    if (this.ctx.accessLog.enabled) {
      this.ctx.accessLog.write({
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
        upstream_host: this.#endpoint?.key ?? '-',
        upstream_cluster: this.#cluster?.name ?? '-',
        upstream_attempts: this.#endpoint === undefined ? 0 : 1,
        route_name: this.#routeName,
        request_id: this.#headers.get('x-request-id') ?? '-',
        trace_id: this.#traceId,
        span_id: '-',
        source_address: `${this.target.source.address}:${this.target.source.port}`,
        source_principal: this.target.sourceIdentity ?? '-',
        destination_service: this.target.service?.hostname ?? '-',
        user_agent: this.#headers.get('user-agent') ?? '-',
        error: this.#error === '' ? '-' : this.#error,
      });
    }
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

