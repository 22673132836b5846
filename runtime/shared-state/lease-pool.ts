/** Local mode: each node draws leases of tokens from the shared counter in the background and decides on its own; leased tokens are already counted, so nodes cannot jointly exceed the limit of a window. */
import type { ConsumeResult, LimitSpec, StateBackend } from './state-backend.js';

export interface LeaseDecision {
  readonly allowed: boolean;
  readonly remaining: number;
  readonly resetMs: number;
  readonly retryAfterMs: number;
  /** 'lease' when answered from leased tokens, 'cache' when the counter is known to be exhausted. */
  readonly source: 'lease' | 'cache';
}

interface Lease {
  tokens: number;
  /** Local ms until which the tokens may be spent (fixed: the end of the window they were counted in). */
  validUntil: number;
  /** Local ms until which the shared counter is known to have no lease to give. */
  overUntil: number;
  /** Local ms of the next reset, and the shared remaining at the last fetch, for headers. */
  resetAt: number;
  sharedRemaining: number;
  fetching: Promise<void> | undefined;
}

export interface LeasePoolOptions {
  /** Lease size as a fraction of the limit (default 1%); bigger leases mean fewer backend calls and a looser GCRA bound. */
  leaseFraction?: number;
  maxLease?: number;
  /** ms the backend may take for a lease before the attempt counts for nothing. */
  budgetMs: number;
  onFetch?: (spec: LimitSpec, result: ConsumeResult) => void;
}

/** GCRA leases expire so tokens cannot be hoarded: the rolling bound gets at most this much slack in time. */
const GCRA_LEASE_TTL_MS = 1_000;

export class LeasePool {
  readonly #backend: StateBackend;
  readonly #leases = new Map<string, Lease>();
  readonly #fraction: number;
  readonly #maxLease: number;
  readonly #budgetMs: number;
  readonly #onFetch: LeasePoolOptions['onFetch'];
  #lastSweep = 0;

  constructor(backend: StateBackend, options: LeasePoolOptions) {
    this.#backend = backend;
    this.#fraction = options.leaseFraction ?? 0.01;
    this.#maxLease = options.maxLease ?? 10_000;
    this.#budgetMs = options.budgetMs;
    this.#onFetch = options.onFetch;
  }

  leaseSize(spec: LimitSpec): number {
    const cap = spec.algorithm === 'gcra' ? Math.min(spec.burst, this.#maxLease) : this.#maxLease;
    return Math.max(1, Math.min(cap, Math.ceil(spec.limit * this.#fraction)));
  }

  /** Synchronous decision from the local lease, or undefined when a fetch is needed first. */
  tryTake(spec: LimitSpec, hits: number, now: number): LeaseDecision | undefined {
    const lease = this.#leases.get(spec.id);
    if (lease === undefined) return undefined;
    if (lease.validUntil <= now || lease.tokens < hits) {
      // Tokens still held are spent first: a refused refill does not void what was already counted for us.
      if (lease.overUntil > now) {
        return { allowed: false, remaining: 0, resetMs: Math.max(0, lease.resetAt - now), retryAfterMs: lease.overUntil - now, source: 'cache' };
      }
      return undefined;
    }
    lease.tokens -= hits;
    if (lease.tokens < this.leaseSize(spec) / 2 && lease.fetching === undefined && lease.overUntil <= now) this.#prefetch(spec, lease);
    return { allowed: true, remaining: lease.sharedRemaining + lease.tokens, resetMs: Math.max(0, lease.resetAt - now), retryAfterMs: 0, source: 'lease' };
  }

  /** Fetches a lease (deduplicated per counter); rejects with the backend's error so the caller applies failMode. */
  fetch(spec: LimitSpec, hits: number): Promise<void> {
    const lease = this.#lease(spec.id);
    lease.fetching ??= this.#fetch(spec, lease, hits).finally(() => {
      lease.fetching = undefined;
    });
    return lease.fetching;
  }

  #prefetch(spec: LimitSpec, lease: Lease): void {
    // Errors surface through the backend's metrics; the next decision that runs out of tokens sees them itself.
    lease.fetching = this.#fetch(spec, lease, 0)
      .catch(() => undefined)
      .finally(() => {
        lease.fetching = undefined;
      });
  }

  async #fetch(spec: LimitSpec, lease: Lease, hits: number): Promise<void> {
    const want = Math.max(hits, this.leaseSize(spec));
    const sent = performance.now();
    const result = await this.#backend.consume(spec, want, { atMost: true, budgetMs: this.#budgetMs });
    this.#onFetch?.(spec, result);
    const now = performance.now();
    // Times are measured from the send: the window can only have ended later than we assume, never earlier.
    const validUntil = spec.algorithm === 'fixed' ? sent + result.resetMs - 1 : sent + Math.min(GCRA_LEASE_TTL_MS, spec.windowMs);
    lease.tokens = (lease.validUntil > now ? lease.tokens : 0) + result.granted;
    lease.validUntil = validUntil;
    lease.resetAt = sent + result.resetMs;
    lease.sharedRemaining = result.remaining;
    lease.overUntil = result.granted === 0 ? sent + result.retryAfterMs : 0;
    this.#sweep(now);
  }

  #lease(id: string): Lease {
    let lease = this.#leases.get(id);
    if (lease === undefined) {
      lease = { tokens: 0, validUntil: 0, overUntil: 0, resetAt: 0, sharedRemaining: 0, fetching: undefined };
      this.#leases.set(id, lease);
    }
    return lease;
  }

  /** Forgets idle counters; their unspent tokens were counted already, so dropping them can only under-admit. */
  #sweep(now: number): void {
    if (now - this.#lastSweep < 5_000) return;
    this.#lastSweep = now;
    for (const [id, l] of this.#leases) if (l.fetching === undefined && l.validUntil <= now && l.overUntil <= now) this.#leases.delete(id);
  }

  get size(): number {
    return this.#leases.size;
  }
}
