/** An upstream cluster (a service port, optionally a label subset): its endpoints, load balancer, Envoy-style circuit-breaker thresholds and outlier detection; counters survive config reloads. */
import type { ConnectionPoolConfig, LoadBalancerConfig, OutlierDetectionConfig } from '../config/l7-config-schema.js';
import { CONNECTION_POOL_DEFAULTS } from '../config/defaults.js';
import type { Workload } from '../state/state-snapshot.js';
import type { ConnectionBudget } from './http1-pool.js';
import { Http1Pool, type ConnectFn } from './http1-pool.js';
import { createLoadBalancer, type LoadBalancer } from './load-balancer.js';

const DEFAULT_POOL: ConnectionPoolConfig = { ...CONNECTION_POOL_DEFAULTS };

/** One address:port; shared by every cluster that contains it, so its pool and outlier state are per host as in Envoy. */
export class UpstreamEndpoint {
  readonly key: string;
  readonly address: string;
  readonly port: number;
  workload: Workload | undefined;
  activeRequests = 0;
  ejectedUntil = 0;
  ejections = 0;
  consecutive5xx = 0;
  consecutiveGateway = 0;
  consecutiveLocal = 0;
  /** Keep-alive pools by the identity their connections are opened for ('' when none): see L7Target.upstreamIdentity. */
  readonly #pools = new Map<string, Http1Pool>();
  readonly #connect: ConnectFn;

  constructor(address: string, port: number, connect: ConnectFn) {
    this.address = address;
    this.port = port;
    this.key = address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
    this.#connect = connect;
  }

  /** The pool of connections opened for `identity` (a local workload's SPIFFE ID), or plain ones when undefined. */
  poolFor(identity: string | undefined): Http1Pool {
    const key = identity ?? '';
    let pool = this.#pools.get(key);
    if (pool === undefined) this.#pools.set(key, (pool = new Http1Pool(this.address, this.port, this.#connect, identity)));
    return pool;
  }

  pools(): IterableIterator<Http1Pool> {
    return this.#pools.values();
  }
}

/** How an attempt ended, for outlier detection (Envoy splits upstream 5xx from local-origin failures). */
export type AttemptOutcome = 'success' | '5xx' | 'gateway' | 'local-failure';

export type OverflowKind = 'connections' | 'pending' | 'requests' | 'retries';

export class UpstreamCluster implements ConnectionBudget {
  readonly name: string;
  endpoints: UpstreamEndpoint[] = [];
  lb: LoadBalancer<UpstreamEndpoint>;
  lbConfig: LoadBalancerConfig | undefined;
  limits: ConnectionPoolConfig = DEFAULT_POOL;
  outlier: OutlierDetectionConfig | undefined;
  connections = 0;
  pending = 0;
  activeRequests = 0;
  activeRetries = 0;
  readonly overflows: Record<OverflowKind, number> = { connections: 0, pending: 0, requests: 0, retries: 0 };
  /** The snapshot version the endpoint list was built from. */
  version = -1;

  constructor(name: string) {
    this.name = name;
    this.lb = createLoadBalancer(undefined);
  }

  get maxConnections(): number {
    return this.limits.maxConnections;
  }
  get maxPendingRequests(): number {
    return this.limits.maxPendingRequests;
  }
  get connectTimeoutMs(): number {
    return this.limits.connectTimeoutMs;
  }
  get maxRequestsPerConnection(): number {
    return this.limits.maxRequestsPerConnection;
  }

  onOverflow(kind: 'connections' | 'pending'): void {
    this.overflows[kind]++;
  }

  configure(endpoints: UpstreamEndpoint[], lb: LoadBalancerConfig | undefined, pool: ConnectionPoolConfig | undefined, outlier: OutlierDetectionConfig | undefined, version: number): void {
    this.endpoints = endpoints;
    if (lb?.kind !== this.lbConfig?.kind || lb?.ringSize !== this.lbConfig?.ringSize) this.lb = createLoadBalancer(lb);
    this.lbConfig = lb;
    this.limits = pool ?? DEFAULT_POOL;
    this.outlier = outlier;
    this.version = version;
  }

  pick(now: number, hash: number | undefined): UpstreamEndpoint | undefined {
    return this.lb.pick(this.endpoints, now, hash);
  }

  /** max_requests threshold; false means answer 503 UO without trying. */
  tryStartRequest(): boolean {
    if (this.activeRequests >= this.limits.maxRequests) {
      this.overflows.requests++;
      return false;
    }
    this.activeRequests++;
    return true;
  }

  endRequest(): void {
    this.activeRequests--;
  }

  /**
   * A retry is allowed when both the max_retries threshold and the retry budget (a share of active requests,
   * with a floor of `minConcurrency`) have room; Envoy lets a budget override max_retries, weft applies both.
   */
  tryStartRetry(budgetPercent: number, minConcurrency: number): boolean {
    const budget = Math.max(minConcurrency, Math.floor((this.activeRequests * budgetPercent) / 100));
    if (this.activeRetries >= this.limits.maxRetries || this.activeRetries >= budget) {
      this.overflows.retries++;
      return false;
    }
    this.activeRetries++;
    return true;
  }

  endRetry(): void {
    this.activeRetries--;
  }

  /** Envoy outlier detection on consecutive errors; ejection time grows with each ejection, capped, and at most maxEjectionPercent (but at least one host) is out. */
  report(ep: UpstreamEndpoint, outcome: AttemptOutcome, now: number): void {
    const od = this.outlier;
    if (outcome === 'success') {
      ep.consecutive5xx = 0;
      ep.consecutiveGateway = 0;
      ep.consecutiveLocal = 0;
      return;
    }
    if (od === undefined) return;
    let trip = false;
    if (outcome === '5xx' || outcome === 'gateway' || outcome === 'local-failure') {
      ep.consecutive5xx++;
      if (od.consecutive5xxErrors > 0 && ep.consecutive5xx >= od.consecutive5xxErrors) trip = true;
    }
    if (outcome === 'gateway' || outcome === 'local-failure') {
      ep.consecutiveGateway++;
      if (od.consecutiveGatewayErrors > 0 && ep.consecutiveGateway >= od.consecutiveGatewayErrors) trip = true;
    }
    if (outcome === 'local-failure') {
      ep.consecutiveLocal++;
      if (od.consecutiveLocalOriginFailures > 0 && ep.consecutiveLocal >= od.consecutiveLocalOriginFailures) trip = true;
    }
    if (!trip || ep.ejectedUntil > now) return;
    const ejected = this.endpoints.filter((e) => e.ejectedUntil > now).length;
    const allowed = Math.max(1, Math.floor((this.endpoints.length * od.maxEjectionPercent) / 100));
    if (ejected >= allowed) return;
    ep.ejections++;
    ep.ejectedUntil = now + Math.min(od.baseEjectionTimeMs * ep.ejections, Math.max(od.maxEjectionTimeMs, od.baseEjectionTimeMs));
    ep.consecutive5xx = 0;
    ep.consecutiveGateway = 0;
    ep.consecutiveLocal = 0;
  }
}
