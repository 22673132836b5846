/** Round-robin endpoint selection per service that skips unhealthy workloads and endpoints in connect-failure backoff; survives config reloads. */
import type { Service, Workload } from '../state/state-snapshot.js';
import { DEFAULT_ENDPOINT_BACKOFF_MS } from '../config/defaults.js';

export class EndpointPicker {
  readonly #cursor = new Map<string, number>();
  /** Endpoint address (ip) → time until which it is skipped after a failed connect. */
  readonly #backoffUntil = new Map<string, number>();
  readonly #backoffMs: number;
  readonly #now: () => number;

  constructor(opts: { backoffMs?: number; now?: () => number } = {}) {
    this.#backoffMs = opts.backoffMs ?? DEFAULT_ENDPOINT_BACKOFF_MS;
    this.#now = opts.now ?? Date.now;
  }

  /** Next healthy endpoint after the cursor; `exclude` skips endpoints already tried for this connection. */
  pick(service: Service, exclude?: ReadonlySet<Workload>): Workload | undefined {
    const eps = service.endpoints;
    if (eps.length === 0) return undefined;
    const start = this.#cursor.get(service.key) ?? 0;
    const now = this.#now();
    let fallback: Workload | undefined;
    for (let i = 0; i < eps.length; i++) {
      const idx = (start + i) % eps.length;
      const ep = eps[idx] as Workload;
      if (ep.status !== 'Healthy' || exclude?.has(ep) === true) continue;
      const until = this.#backoffUntil.get(ep.addresses[0] ?? '');
      if (until !== undefined && until > now) {
        fallback ??= ep;
        continue;
      }
      this.#cursor.set(service.key, idx + 1);
      return ep;
    }
    // Every healthy endpoint is backing off: try one anyway rather than fail (Envoy's panic threshold idea).
    if (fallback !== undefined) this.#cursor.set(service.key, eps.indexOf(fallback) + 1);
    return fallback;
  }

  reportFailure(endpoint: Workload): void {
    this.#backoffUntil.set(endpoint.addresses[0] ?? '', this.#now() + this.#backoffMs);
  }

  reportSuccess(endpoint: Workload): void {
    if (this.#backoffUntil.size > 0) this.#backoffUntil.delete(endpoint.addresses[0] ?? '');
  }
}
