/** L4 authorization at the destination with Istio semantics (any matching DENY denies; no ALLOW means allow; else one ALLOW must match), plus PeerAuthentication STRICT. */
import type { PeerAuthenticationConfig } from '../config/config-schema.js';
import type { StateSnapshot, Workload } from '../state/state-snapshot.js';
import { appliesTo, compilePolicy, ROOT_NAMESPACE, type CompiledPolicy, type ConnectionAttributes } from './authz-policy.js';

export type AuthzDecision = { allowed: true } | { allowed: false; reason: string };

interface Compiled {
  policies: CompiledPolicy[];
  peerAuthentication: PeerAuthenticationConfig[];
}

/** Policies are compiled once per snapshot; snapshots are immutable, so the cache never goes stale. */
const cache = new WeakMap<StateSnapshot, Compiled>();

function compiled(snapshot: StateSnapshot): Compiled {
  let c = cache.get(snapshot);
  if (c === undefined) {
    c = {
      policies: snapshot.policies.map(compilePolicy).filter((p): p is CompiledPolicy => p !== undefined),
      peerAuthentication: snapshot.config.peerAuthentication,
    };
    cache.set(snapshot, c);
  }
  return c;
}

/** Istio precedence: a workload-selector PeerAuthentication beats the namespace one, which beats the mesh-wide one. */
export function peerAuthenticationMode(snapshot: StateSnapshot, w: Workload): 'STRICT' | 'PERMISSIVE' {
  const all = compiled(snapshot).peerAuthentication;
  const selected = all.find((p) => p.namespace === w.namespace && p.selector !== undefined && Object.entries(p.selector.matchLabels).every(([k, v]) => w.labels[k] === v));
  const namespaced = all.find((p) => p.namespace === w.namespace && p.selector === undefined);
  const mesh = all.find((p) => (p.namespace === undefined || p.namespace === ROOT_NAMESPACE) && p.selector === undefined);
  return (selected ?? namespaced ?? mesh)?.mode ?? 'PERMISSIVE';
}

/**
 * `policiesAtL7`: the connection is handed to this node's L7 path, whose authorization filter evaluates the destination's
 * policies on every request with all their attributes (an ALLOW with L7 fields never matches at L4); only what L7 does
 * not check, STRICT mTLS, is decided here.
 */
export interface AuthorizeOptions {
  policiesAtL7?: boolean;
  /**
   * Re-checking a live L4 connection after a policy change: an ALLOW with L7 fields belongs to the L7 path, which new
   * connections to that destination now take; like a waypoint's policy in ztunnel, it does not close established L4
   * connections. DENY rules and L4-only ALLOWs still do.
   */
  live?: boolean;
}

export function authorize(snapshot: StateSnapshot, conn: ConnectionAttributes, opts: AuthorizeOptions = {}): AuthzDecision {
  // istiod turns STRICT into a DENY of connections without a principal (istio_converted_static_strict).
  if (conn.sourceIdentity === undefined && peerAuthenticationMode(snapshot, conn.destination) === 'STRICT') {
    return { allowed: false, reason: 'explicitly denied by: istio-system/istio_converted_static_strict (STRICT mTLS, plaintext connection)' };
  }
  if (opts.policiesAtL7 === true) return { allowed: true };
  const applicable = compiled(snapshot).policies.filter((p) => appliesTo(p, conn.destination));
  for (const p of applicable) {
    if (p.action === 'DENY' && p.matches(conn)) return { allowed: false, reason: `explicitly denied by: ${p.key}` };
  }
  const allows = applicable.filter((p) => p.action === 'ALLOW' && !(opts.live === true && p.allowNeedsL7));
  if (allows.length === 0) return { allowed: true };
  if (allows.some((p) => p.matches(conn))) return { allowed: true };
  return { allowed: false, reason: 'allow policies exist, but none allowed' };
}
