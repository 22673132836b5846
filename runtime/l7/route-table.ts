/** Compiles a service's `routes:` into matchers (path exact/prefix/regex, method, headers) with weighted backends, rewrites, header operations, mirroring, timeouts and retry policy; first matching route wins, as in Istio. */
import type { HeaderOpsConfig, HttpRouteConfig, LoadBalancerConfig, RetriesConfig, StringMatchConfig } from '../config/l7-config-schema.js';
import type { Service, StateSnapshot } from '../state/state-snapshot.js';
import type { HeaderList } from './header-list.js';
import type { UpstreamCluster } from './upstream-cluster.js';

type Matcher = (value: string) => boolean;

function compileString(m: StringMatchConfig): Matcher {
  if (m.exact !== undefined) {
    const exact = m.exact;
    return (v) => v === exact;
  }
  if (m.prefix !== undefined) {
    const prefix = m.prefix;
    return (v) => v.startsWith(prefix);
  }
  if (m.regex !== undefined) {
    // Envoy's safe_regex matches the whole value (RE2 full match).
    const re = new RegExp(`^(?:${m.regex})$`, 'u');
    return (v) => re.test(v);
  }
  return () => true; // present
}

interface CompiledMatch {
  path: Matcher | undefined;
  /** Set for prefix matches: the part a `rewrite.uri` replaces. */
  prefixValue: string | undefined;
  method: string | undefined;
  headers: [string, Matcher, boolean][];
}

export interface RouteBackend {
  /** The cluster resolved for this backend within the route's snapshot (cache; set by the router). */
  cluster?: { port: number; cluster: UpstreamCluster };
  service: Service | undefined;
  labels: Record<string, string> | undefined;
  port: number | undefined;
  weight: number;
}

export interface RetryPolicy {
  attempts: number;
  perTryTimeoutMs: number | undefined;
  on: ReadonlySet<string>;
  statusCodes: ReadonlySet<number>;
  budgetPercent: number;
  minRetryConcurrency: number;
  backoffBaseMs: number;
}

export interface CompiledRoute {
  readonly name: string;
  readonly matches: CompiledMatch[];
  readonly backends: RouteBackend[];
  readonly totalWeight: number;
  readonly rewriteUri: string | undefined;
  readonly rewriteRegex: { re: RegExp; replacement: string } | undefined;
  readonly rewriteAuthority: string | undefined;
  /** CONNECT requests matching this route open a tunnel to its backend (through the filters first); answered 405 otherwise. */
  readonly connect: boolean;
  readonly requestHeaders: HeaderOpsConfig | undefined;
  readonly responseHeaders: HeaderOpsConfig | undefined;
  readonly mirror: { backend: RouteBackend; percent: number } | undefined;
  readonly timeoutMs: number;
  readonly retry: RetryPolicy | undefined;
  readonly loadBalancer: LoadBalancerConfig | undefined;
}

function compileRetry(r: RetriesConfig | undefined): RetryPolicy | undefined {
  if (r === undefined || r.attempts === 0) return undefined;
  const on = new Set((Array.isArray(r.retryOn) ? r.retryOn : r.retryOn.split(',')).map((s) => s.trim()).filter((s) => s !== ''));
  return {
    attempts: r.attempts,
    perTryTimeoutMs: r.perTryTimeoutMs,
    on,
    statusCodes: new Set(r.retriableStatusCodes),
    budgetPercent: r.budgetPercent,
    minRetryConcurrency: r.minRetryConcurrency,
    backoffBaseMs: r.backoffBaseMs,
  };
}

function compileRoute(snapshot: StateSnapshot, service: Service | undefined, route: HttpRouteConfig, index: number): CompiledRoute {
  const backendOf = (b: { service?: string; labels?: Record<string, string>; port?: number; weight?: number }): RouteBackend => ({
    service: b.service === undefined ? service : snapshot.serviceByRef(b.service),
    labels: b.labels,
    port: b.port,
    weight: b.weight ?? 1,
  });
  const backends = route.backends.length === 0 ? [backendOf({})] : route.backends.map(backendOf);
  return {
    name: route.name ?? `route-${index}`,
    matches: route.match.map((m) => ({
      path: m.path === undefined ? undefined : compileString(m.path),
      prefixValue: m.path?.prefix,
      method: m.method,
      headers: Object.entries(m.headers ?? {}).map(([n, sm]) => [n.toLowerCase(), compileString(sm), sm.present === false] as [string, Matcher, boolean]),
    })),
    backends,
    totalWeight: backends.reduce((a, b) => a + b.weight, 0),
    rewriteUri: route.rewrite?.uri,
    rewriteRegex: route.rewrite?.uriRegex === undefined ? undefined : { re: new RegExp(route.rewrite.uriRegex.match, 'u'), replacement: route.rewrite.uriRegex.rewrite },
    rewriteAuthority: route.rewrite?.authority,
    connect: route.connect,
    requestHeaders: route.headers?.request,
    responseHeaders: route.headers?.response,
    mirror: route.mirror === undefined ? undefined : { backend: backendOf(route.mirror), percent: route.mirror.percent },
    timeoutMs: route.timeoutMs ?? 0,
    retry: compileRetry(route.retries),
    loadBalancer: route.loadBalancer,
  };
}

function matchesOne(m: CompiledMatch, method: string, path: string, headers: HeaderList): boolean {
  if (m.method !== undefined && m.method !== method) return false;
  if (m.path !== undefined && !m.path(path)) return false;
  for (const [name, matcher, mustBeAbsent] of m.headers) {
    const v = headers.get(name);
    if (mustBeAbsent) {
      if (v !== undefined) return false;
    } else if (v === undefined || !matcher(v)) return false;
  }
  return true;
}

export class RouteTable {
  readonly routes: CompiledRoute[];

  constructor(routes: CompiledRoute[]) {
    this.routes = routes;
  }

  /** `path` is the request path without the query string. */
  match(method: string, path: string, headers: HeaderList): CompiledRoute | undefined {
    for (const r of this.routes) {
      if (r.matches.length === 0) return r;
      for (const m of r.matches) if (matchesOne(m, method, path, headers)) return r;
    }
    return undefined;
  }

  /** Picks a backend by weight; `roll` in [0, 1). */
  static pickBackend(route: CompiledRoute, roll: number): RouteBackend | undefined {
    if (route.backends.length === 1) return route.backends[0];
    let x = roll * route.totalWeight;
    for (const b of route.backends) {
      if (x < b.weight) return b;
      x -= b.weight;
    }
    return undefined;
  }
}

const tables = new WeakMap<StateSnapshot, Map<string, RouteTable>>();

/** The route table of a service port in a snapshot, compiled once per snapshot; a service without routes gets one catch-all route. */
export function routeTableFor(snapshot: StateSnapshot, service: Service | undefined, port: number): RouteTable {
  let perSnapshot = tables.get(snapshot);
  if (perSnapshot === undefined) tables.set(snapshot, (perSnapshot = new Map<string, RouteTable>()));
  const key = service === undefined ? `-:${port}` : `${service.key}:${port}`;
  let table = perSnapshot.get(key);
  if (table === undefined) {
    const entry = service === undefined ? undefined : snapshot.config.routes.find((r) => (r.port === undefined || r.port === port) && snapshot.serviceByRef(r.host)?.key === service.key);
    const routes = entry === undefined ? [compileRoute(snapshot, service, { match: [], backends: [], connect: false }, 0)] : entry.http.map((r, i) => compileRoute(snapshot, service, r, i));
    table = new RouteTable(routes);
    perSnapshot.set(key, table);
  }
  return table;
}
