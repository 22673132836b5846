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
  /** Multiplier of the wait after a refused GCRA lease. */
  backoff: number;
}

export interface LeasePoolOptions {
  /** Lease size as a fraction of the limit (default 2%); bigger leases mean fewer backend calls and a looser GCRA bound. */
  leaseFraction?: number;
  maxLease?: number;
  /** ms the backend may take for a lease before the attempt counts for nothing. */
  budgetMs: number;
  onFetch?: (spec: LimitSpec, result: ConsumeResult) => void;
}

/** GCRA leases expire so tokens cannot be hoarded: the rolling bound gets at most this much slack in time. */
const GCRA_LEASE_TTL_MS = 1_000;
const MAX_BACKOFF = 16;
export const DEFAULT_LEASE_FRACTION = 0.02;

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
    this.#fraction = options.leaseFraction ?? DEFAULT_LEASE_FRACTION;
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
    // GCRA refills a token at a time: under contention a lease of one or two tokens per call would make the
    // backend calls per request explode, so a GCRA lease waits until at least half a lease is there.
    const minGrant = spec.algorithm === 'gcra' ? Math.max(hits, Math.ceil(want / 2)) : Math.max(1, hits);
    const result = await this.#backend.consume(spec, want, { atMost: true, minGrant, budgetMs: this.#budgetMs });
    this.#onFetch?.(spec, result);
    const now = performance.now();
    // Times are measured from the send: the window can only have ended later than we assume, never earlier.
    const validUntil = spec.algorithm === 'fixed' ? sent + result.resetMs - 1 : sent + Math.min(GCRA_LEASE_TTL_MS, spec.windowMs);
    // Fixed-window tokens belong to the window they were counted in: a lease from the next window replaces
    // them (a few unspent tokens lost) instead of carrying them across the boundary (overshoot).
    const sameWindow = spec.algorithm === 'gcra' || Math.abs(validUntil - lease.validUntil) < spec.windowMs / 2;
    lease.tokens = (lease.validUntil > now && sameWindow ? lease.tokens : 0) + result.granted;
    lease.validUntil = validUntil;
    lease.resetAt = sent + result.resetMs;
    lease.sharedRemaining = result.remaining;
    // Nodes refused together would all retry at the same instant and all but one lose again. Refused GCRA
    // leases back off exponentially with jitter (reset by a grant), which settles the nodes' combined asking
    // rate near one call per lease of refill without knowing how many nodes there are. The bucket keeps
    // accruing meanwhile, so waiting costs no capacity as long as the wait stays under the burst's refill time.
    if (result.granted > 0) {
      lease.backoff = 1;
      lease.overUntil = 0;
    } else if (spec.algorithm === 'gcra') {
      lease.backoff = Math.min(lease.backoff * 2, MAX_BACKOFF);
      const burstRefillMs = (spec.burst * spec.windowMs) / spec.limit;
      const wait = Math.min(result.retryAfterMs * lease.backoff * (0.5 + Math.random()), Math.max(result.retryAfterMs, burstRefillMs / 2));
      lease.overUntil = sent + wait;
    } else lease.overUntil = sent + result.retryAfterMs;
    this.#sweep(now);
  }

  #lease(id: string): Lease {
    let lease = this.#leases.get(id);
    if (lease === undefined) {
      lease = { tokens: 0, validUntil: 0, overUntil: 0, resetAt: 0, sharedRemaining: 0, fetching: undefined, backoff: 1 };
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
