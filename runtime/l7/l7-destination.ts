/** Decides whether a destination must be handled at L7: a plugin attached, a route or traffic policy for its service, or an authorization policy with L7 fields targeting it; everything else stays on the L4 path. */
import type { PolicyConfig } from '../config/config-schema.js';
import type { Service, StateSnapshot, Workload } from '../state/state-snapshot.js';

/** Methods, paths and hosts can only be checked on HTTP requests (Istio sends such rules to the waypoint). */
function hasL7Fields(p: PolicyConfig): boolean {
  return p.rules.some((r) => (r.to ?? []).some(({ operation: o }) => o.methods !== undefined || o.notMethods !== undefined || o.paths !== undefined || o.notPaths !== undefined || o.hosts !== undefined || o.notHosts !== undefined));
}

const cache = new WeakMap<StateSnapshot, Map<string, boolean>>();

/**
 * True when `service` (reached on `port`) or the directly addressed `workload` needs the L7 proxy. Results are cached
 * per snapshot, so the L4 path can call this for every accepted connection.
 */
export function isL7Destination(snapshot: StateSnapshot, target: { service?: Service; workload?: Workload; port?: number }): boolean {
  const { service, workload, port } = target;
  let perSnapshot = cache.get(snapshot);
  if (perSnapshot === undefined) cache.set(snapshot, (perSnapshot = new Map<string, boolean>()));
  const key = `${service?.key ?? '-'}|${workload?.uid ?? '-'}|${port ?? '-'}`;
  const hit = perSnapshot.get(key);
  if (hit !== undefined) return hit;
  // A function is only reachable through the L7 path: its backend is an HTTP handler, not a socket.
  let l7 = (workload?.attachment ?? service?.attachment) !== undefined || workload?.function !== undefined || service?.function !== undefined;
  if (!l7 && service !== undefined) {
    const forService = (host: string, p: number | undefined): boolean => snapshot.serviceByRef(host)?.key === service.key && (p === undefined || port === undefined || p === port);
    l7 = snapshot.config.routes.some((r) => forService(r.host, r.port)) || snapshot.config.trafficPolicies.some((t) => forService(t.host, t.port));
  }
  if (!l7) {
    l7 = snapshot.policies.some((p) => {
      if (!hasL7Fields(p)) return false;
      if (p.targetRef !== undefined) {
        if (p.targetRef.kind === 'Service') return service !== undefined && p.targetRef.name === service.name && p.namespace === service.namespace;
        return workload !== undefined && p.targetRef.name === workload.name && p.namespace === workload.namespace;
      }
      return p.selector !== undefined && workload !== undefined && p.namespace === workload.namespace && Object.entries(p.selector.matchLabels).every(([k, v]) => workload.labels[k] === v);
    });
  }
  perSnapshot.set(key, l7);
  return l7;
}
