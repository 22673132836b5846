/** Registry of established inbound connections so a policy change re-checks them and closes those no longer allowed (ztunnel's PolicyWatcher, istio/ztunnel#311). */
import type { ProxyState } from '../state/proxy-state.js';
import type { StateSnapshot } from '../state/state-snapshot.js';
import { createLogger } from '../log.js';
import { authorize, type AuthzDecision } from './authorizer.js';
import type { ConnectionAttributes } from './authz-policy.js';

const log = createLogger('authz');

interface Live {
  attrs: ConnectionAttributes;
  close: (reason: string) => void;
}

export class LiveConnections {
  readonly #live = new Set<Live>();
  readonly #check: (snapshot: StateSnapshot, attrs: ConnectionAttributes) => AuthzDecision;

  constructor(check: (snapshot: StateSnapshot, attrs: ConnectionAttributes) => AuthzDecision = (snapshot, attrs) => authorize(snapshot, attrs, { live: true })) {
    this.#check = check;
  }

  /** Registers a connection; call the returned function when it ends. */
  add(attrs: ConnectionAttributes, close: (reason: string) => void): () => void {
    const entry: Live = { attrs, close };
    this.#live.add(entry);
    return () => this.#live.delete(entry);
  }

  get size(): number {
    return this.#live.size;
  }

  /** Re-evaluates every live connection against `snapshot`; returns how many were closed. */
  recheck(snapshot: StateSnapshot): number {
    let closed = 0;
    for (const entry of [...this.#live]) {
      // The destination may have changed labels (and so policies) in the new snapshot.
      const destination = snapshot.workloadByIp(entry.attrs.destinationIp) ?? entry.attrs.destination;
      const decision = this.#check(snapshot, { ...entry.attrs, destination });
      if (decision.allowed) continue;
      this.#live.delete(entry);
      closed++;
      const reason = `connection closed due to policy rejection: ${decision.reason}`;
      log.info({ src: entry.attrs.sourceIdentity ?? entry.attrs.sourceIp, dst: `${entry.attrs.destinationIp}:${entry.attrs.destinationPort}`, reason }, 'closing connection after policy change');
      entry.close(reason);
    }
    return closed;
  }

  /** Re-checks on every state update; returns the unsubscribe function. */
  watch(state: ProxyState): () => void {
    return state.onUpdate((next, previous) => {
      if (next.policies === previous.policies && next.config.peerAuthentication === previous.config.peerAuthentication && next.workloadsVersion === previous.workloadsVersion) return;
      this.recheck(next);
    });
  }
}
