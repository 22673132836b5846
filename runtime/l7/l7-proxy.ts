/** The L7 waypoint entry point: `createL7Proxy(...)` returns `handleConnection(socket, target, firstBytes)`, which the L4 path calls for destinations with plugins, routes or L7 policy attached. */
import net from 'node:net';
import type { Duplex } from 'node:stream';
import type { L7LimitsConfig } from '../config/l7-config-schema.js';
import { L7_LIMITS_DEFAULTS } from '../config/defaults.js';
import type { Logger } from '../log.js';
import type { ProxyState } from '../state/proxy-state.js';
import type { StateSnapshot } from '../state/state-snapshot.js';
import type { MetricsRegistry } from '../telemetry/metrics-registry.js';
import { ClusterRegistry } from './cluster-registry.js';
import { defaultConnect, type ConnectFn } from './http1-pool.js';
import { Http1ServerConnection } from './http1-server-connection.js';
import { HttpAccessLog, type AccessLogBatchSink } from './http-access-log.js';
import { HttpTelemetry } from './http-telemetry.js';
import type { L7Context, L7Target } from './l7-context.js';
import type { L7Filter } from './l7-filter.js';
import { createL7AuthzFilter } from './l7-authz-filter.js';
import { detectProtocol } from './protocol-detect.js';
import { RequestMirror } from './request-mirror.js';
import { createH2cServer, type H2cServer } from './h2c-server.js';
import type { Drain } from '../drain.js';

export type { L7Target } from './l7-context.js';

/** The slice of the Wasm plugin host the L7 path needs: filters for the plugins attached to a destination. */
export interface PluginHostLike {
  /** Filters for `pluginNames` in chain order (the host sorts by phase and priority); unknown names are skipped by the host. */
  filtersFor(pluginNames: readonly string[], configOverrides: Record<string, unknown>): readonly L7Filter[];
}

export interface L7ProxyOptions {
  state: ProxyState;
  metrics: MetricsRegistry;
  logger: Logger;
  plugins?: PluginHostLike;
  /** Overrides of `l7:` in weft.yaml (the current snapshot's values are used otherwise). */
  limits?: Partial<L7LimitsConfig>;
  /** Native filters appended after plugins for every destination (tests, embedders). */
  extraFilters?: (target: L7Target) => readonly L7Filter[];
  /** How upstream connections are made (the L4 path passes its HBONE/mTLS connector); plain TCP by default. */
  connectUpstream?: ConnectFn;
  /** Access-log destination; defaults to weft.yaml `accessLog` (path or stdout). */
  accessLog?: { enabled?: boolean; path?: string; sink?: AccessLogBatchSink; worker?: number };
  /**
   * The runtime's drain: every downstream connection is tracked until it closes, so a drain waits for the in-flight
   * request of each keep-alive connection (and for its next one, answered with `connection: close`) up to the deadline.
   */
  drain?: Pick<Drain, 'track'>;
}

export interface L7Proxy {
  handleConnection(socket: Duplex, target: L7Target, firstBytes?: Buffer): void;
  /** Drain: HTTP/1 connections close after their in-flight response, HTTP/2 sessions get GOAWAY. */
  drain(): void;
  close(): Promise<void>;
  /** Open upstream and downstream sockets (tests assert nothing leaks). */
  openSockets(): { downstream: number; upstream: number };
  readonly telemetry: HttpTelemetry;
  readonly clusters: ClusterRegistry;
}

/** How long a connection may take to show which protocol it speaks. */
const DETECT_TIMEOUT_MS = 5_000;

export function createL7Proxy(opts: L7ProxyOptions): L7Proxy {
  const snapshotLimits = opts.state.current.config.l7 ?? { ...L7_LIMITS_DEFAULTS };
  const limits: L7LimitsConfig = { ...snapshotLimits, ...opts.limits };
  const cfgLog = opts.state.current.config.accessLog;
  const accessLog = new HttpAccessLog({ enabled: cfgLog.enabled, ...(cfgLog.path === undefined ? {} : { path: cfgLog.path }), ...opts.accessLog });
  const connect = opts.connectUpstream ?? defaultConnect;
  const clusters = new ClusterRegistry(connect);
  const telemetry = HttpTelemetry.for(opts.metrics);
  const filterCache = new WeakMap<StateSnapshot, Map<string, readonly L7Filter[]>>();

  const filtersFor = (snapshot: StateSnapshot, target: L7Target): readonly L7Filter[] => {
    let perSnapshot = filterCache.get(snapshot);
    if (perSnapshot === undefined) filterCache.set(snapshot, (perSnapshot = new Map<string, readonly L7Filter[]>()));
    const key = `${target.service?.key ?? '-'}|${target.workload?.uid ?? '-'}`;
    let filters = perSnapshot.get(key);
    if (filters === undefined) {
      const list: L7Filter[] = [];
      const authz = createL7AuthzFilter(snapshot, target);
      if (authz !== undefined) list.push(authz);
      const attachment = target.workload?.attachment ?? target.service?.attachment;
      if (attachment !== undefined && opts.plugins !== undefined) list.push(...opts.plugins.filtersFor(attachment.plugins, attachment.configOverrides));
      filters = list;
      perSnapshot.set(key, filters);
    }
    if (opts.extraFilters === undefined) return filters;
    return [...filters, ...opts.extraFilters(target)];
  };

  const mirror = new RequestMirror(opts.logger, connect);
  const ctx: L7Context = { state: opts.state, limits, clusters, telemetry, accessLog, logger: opts.logger, filtersFor, mirror, connect, connections: new Set(), draining: false };
  let h2: H2cServer | undefined;
  // One sweep instead of a socket timer per connection: a socket timer is re-armed on every read and write.
  const sweeper = setInterval(() => {
    const now = Date.now();
    clusters.sweepIdle(now - 60_000);
    const cutoff = now - limits.idleTimeoutMs;
    for (const c of ctx.connections) if (c.isIdleSince?.(cutoff) === true) c.destroy();
  }, Math.min(10_000, Math.max(100, limits.idleTimeoutMs / 4)));
  sweeper.unref();
  let closed = false;

  /** Dispatched HTTP/1 connections by socket: the drain deadline closes an idle one in order and cuts a busy one. */
  const http1 = new WeakMap<Duplex, Http1ServerConnection>();
  const dispatch = (socket: Duplex, target: L7Target, bytes: Buffer): boolean => {
    const detected = detectProtocol(target.servicePort?.appProtocol, bytes);
    if (detected === 'need-more') return false;
    if (detected === 'http1') http1.set(socket, new Http1ServerConnection(socket, ctx, target, bytes));
    else if (detected === 'h2c') (h2 ??= createH2cServer(ctx, connect)).handle(socket, target, bytes);
    else passthrough(socket, target, bytes, connect);
    return true;
  };

  return {
    telemetry,
    clusters,
    handleConnection(socket, target, firstBytes) {
      if (closed) {
        socket.destroy();
        return;
      }
      if (socket instanceof net.Socket) socket.setNoDelay(true);
      const release = opts.drain?.track({ destroy: () => (http1.has(socket) ? http1.get(socket)?.endAtDeadline() : socket.destroy()) });
      if (release !== undefined) {
        if (socket.closed) release();
        else socket.once('close', release);
      }
      let bytes = firstBytes ?? Buffer.alloc(0);
      if (bytes.length > 0 && dispatch(socket, target, bytes)) return;
      // Read until the protocol is known, then hand over with those bytes.
      const timer = setTimeout(() => socket.destroy(), DETECT_TIMEOUT_MS);
      const onData = (chunk: Buffer): void => {
        bytes = bytes.length === 0 ? chunk : Buffer.concat([bytes, chunk]);
        if (detectProtocol(target.servicePort?.appProtocol, bytes) === 'need-more') return;
        cleanup();
        dispatch(socket, target, bytes);
      };
      const cleanup = (): void => {
        clearTimeout(timer);
        socket.off('data', onData);
        socket.off('close', cleanup);
      };
      socket.on('data', onData);
      socket.on('close', cleanup);
      socket.on('error', () => socket.destroy());
    },
    drain() {
      // Connections that reach L7 from now on (accepted before the listener closed, first bytes still on their way) drain too.
      ctx.draining = true;
      for (const c of ctx.connections) c.drain?.();
      h2?.goaway();
    },
    openSockets() {
      return { downstream: ctx.connections.size + (h2?.sessions ?? 0), upstream: clusters.openConnections() + (h2?.upstreamSessions ?? 0) };
    },
    async close() {
      if (closed) return;
      closed = true;
      clearInterval(sweeper);
      for (const c of [...ctx.connections]) c.destroy();
      clusters.closeAll();
      await h2?.close();
      await mirror.close();
      await accessLog.close();
    },
  };
}

/** A connection that speaks neither HTTP/1 nor h2c is proxied as bytes to its original destination. */
function passthrough(socket: Duplex, target: L7Target, bytes: Buffer, connect: ConnectFn): void {
  const up = connect(target.originalDst.address, target.originalDst.port, target.upstreamIdentity);
  up.write(bytes);
  socket.pipe(up);
  up.pipe(socket);
  up.on('error', () => socket.destroy());
  socket.on('error', () => up.destroy());
  socket.on('close', () => up.destroy());
  up.on('close', () => socket.destroy());
}
