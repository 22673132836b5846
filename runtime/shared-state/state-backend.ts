/** The contract every shared-state backend (memory, redis) fulfils: atomic limit decisions and shared breaker records; policies live in rate-limiter.ts and circuit-breaker.ts. */

export const LIMIT_ALGORITHMS = ['fixed', 'gcra'] as const;
export type LimitAlgorithm = (typeof LIMIT_ALGORITHMS)[number];

/** What one counter is: its backend key and how it refills. */
export interface LimitSpec {
  /** Backend-neutral counter id (domain + descriptor values); the backend adds prefix and hash tag. */
  readonly id: string;
  readonly algorithm: LimitAlgorithm;
  /** Requests admitted per window (fixed) or per windowMs at steady state (gcra). */
  readonly limit: number;
  readonly windowMs: number;
  /** GCRA bucket size (requests admissible at once); ignored by fixed windows. */
  readonly burst: number;
}

export interface ConsumeOptions {
  /**
   * false (strict): all `hits` or nothing. true (lease): grant min(hits, available) — how local mode draws
   * tokens, so a lease never takes more than the limit has left.
   */
  readonly atMost?: boolean;
  /** With atMost: grant nothing rather than fewer than this (default 1), so contended leases are not dribbled out a token at a time. */
  readonly minGrant?: number;
  /** Give up (count nothing) if the backend would execute the decision later than this many ms from now. */
  readonly budgetMs?: number;
}

export interface ConsumeResult {
  /** All requested hits granted (strict) or at least one granted (lease). */
  readonly allowed: boolean;
  readonly granted: number;
  /** Requests still admissible right now after this decision. */
  readonly remaining: number;
  /** ms until the window resets (fixed) or the bucket is full again (gcra). */
  readonly resetMs: number;
  /** ms until the requested hits could be admitted; 0 when allowed. */
  readonly retryAfterMs: number;
  /** When the backend decided, on its own clock (Redis TIME), in ms since the epoch; for audits and tests. */
  readonly decidedAtMs?: number;
}

/** A ConsumeResult a caller owns and lets a synchronous backend fill (MemoryBackend.consumeNow), one per caller, reused. */
export type WritableConsumeResult = { -readonly [K in keyof ConsumeResult]-?: ConsumeResult[K] };

export const newConsumeResult = (): WritableConsumeResult => ({ allowed: false, granted: 0, remaining: 0, resetMs: 0, retryAfterMs: 0, decidedAtMs: 0 });

export const BREAKER_STATES = ['CLOSED', 'OPEN', 'HALF_OPEN'] as const;
export type BreakerState = (typeof BREAKER_STATES)[number];

/** The shared view of one breaker; `generation` grows on every transition so stale news is ignored. */
export interface BreakerRecord {
  readonly name: string;
  readonly state: BreakerState;
  readonly generation: number;
  /** ms left in OPEN (0 when not OPEN or already expired: the next caller may probe). */
  readonly openRemainingMs: number;
}

export interface BreakerThresholds {
  readonly windowMs: number;
  readonly minimumCalls: number;
  /** Percent of failed calls (1..100) at or above which the breaker opens. */
  readonly failureRateThreshold: number;
  readonly minReportingNodes: number;
  readonly openMs: number;
}

export interface BreakerFlushResult {
  readonly record: BreakerRecord;
  readonly calls: number;
  readonly failures: number;
  readonly reportingNodes: number;
}

export interface BreakerProbeResult {
  readonly acquired: boolean;
  readonly record: BreakerRecord;
}

export type BreakerListener = (record: BreakerRecord) => void;

export const BACKEND_KINDS = ['memory', 'redis'] as const;
export type BackendKind = (typeof BACKEND_KINDS)[number];

export interface StateBackend {
  readonly kind: BackendKind;
  /** True when decisions can be made now (redis: connected and not marked unhealthy). */
  isHealthy(): boolean;
  consume(spec: LimitSpec, hits: number, options?: ConsumeOptions): Promise<ConsumeResult>;

  /** Adds this node's outcome counts to the shared window; opens the breaker when the aggregate crosses thresholds. */
  breakerFlush(name: string, node: string, successes: number, failures: number, thresholds: BreakerThresholds): Promise<BreakerFlushResult>;
  breakerGet(names: readonly string[]): Promise<BreakerRecord[]>;
  /** Takes the one cluster-wide probe slot (SET NX PX) if the breaker is due for HALF_OPEN. */
  breakerAcquireProbe(name: string, owner: string, ttlMs: number): Promise<BreakerProbeResult>;
  /** Reports the probe's outcome: enough successes close the breaker, a failure re-opens it for `openMs`. */
  breakerProbeResult(name: string, owner: string, success: boolean, requiredSuccesses: number, openMs: number): Promise<BreakerRecord>;
  /** Transition pushes (pub/sub); delivery is at most once, callers poll as a backstop. */
  onBreakerChange(listener: BreakerListener): () => void;
  close(): Promise<void>;
}

/** Escapes the characters that would break a Redis hash tag or our separators inside a counter id. */
export function escapeIdPart(text: string): string {
  // Most parts (domains, keys, user ids, addresses) need no escaping: a scan is cheaper than the regex replace.
  let plain = true;
  for (let i = 0; i < text.length && plain; i++) {
    const c = text.charCodeAt(i);
    plain = c !== 0x25 && c !== 0x7b && c !== 0x7d && c !== 0x7c && c !== 0x3d;
  }
  if (plain) return text;
  return text.replace(/[%{}|=]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`);
}

/** The min_grant the algorithms take: 0 = strict all-or-nothing, else clamped to 1..hits. */
export function minGrantOf(hits: number, options: ConsumeOptions): number {
  if (options.atMost !== true) return 0;
  return Math.max(1, Math.min(hits, Math.floor(options.minGrant ?? 1)));
}
