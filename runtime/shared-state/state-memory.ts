/** The embedded backend: the same decisions as Redis, in process memory, shareable between several in-process "nodes" through one MemoryStore. */
import { EventEmitter } from 'node:events';
import { fixedWindowDecide, fixedWindowDecideInto, newFixedWindowScratch } from './fixed-window.js';
import { gcraDecide, gcraParams } from './gcra.js';
import { COUNTER_KINDS, type SharedCounterTable } from './shared-counter-table.js';
import {
  minGrantOf,
  type BreakerFlushResult,
  type BreakerListener,
  type BreakerProbeResult,
  type BreakerRecord,
  type BreakerState,
  type BreakerThresholds,
  type ConsumeOptions,
  type ConsumeResult,
  type LimitSpec,
  type StateBackend,
  type WritableConsumeResult,
} from './state-backend.js';

interface BreakerEntry {
  state: BreakerState;
  generation: number;
  /** ms on the store clock when OPEN ends. */
  until: number;
  probeOwner: string | undefined;
  probeUntil: number;
  halfOpenSuccesses: number;
  /** bucket index -> counts, bucket = windowMs / 10 (as the Lua script). */
  buckets: Map<number, { successes: number; failures: number }>;
  nodes: Map<string, number>;
}

/** A fixed-window counter as the store keeps it (mutable: updated in place). */
interface StoredWindow {
  window: number;
  count: number;
  expiresUs: number;
}

/** performance.timeOrigin is a getter that makes a new number on every read; it never changes. */
const TIME_ORIGIN = performance.timeOrigin;
/** Milliseconds since the epoch, sub-millisecond (GCRA at high rates needs the precision). */
const wallClockMs = (): number => TIME_ORIGIN + performance.now();

/** Counters and breakers of one memory "server"; `now` is injectable for tests (ms). */
export class MemoryStore {
  readonly gcra = new Map<string, { tat: number; expiresUs: number }>();
  readonly windows = new Map<string, StoredWindow>();
  readonly breakers = new Map<string, BreakerEntry>();
  readonly events = new EventEmitter();
  readonly now: () => number;
  /** Rate-limit counters shared by every worker thread of the process (runtime/workers); the maps above when absent. */
  readonly table: SharedCounterTable | undefined;
  #lastSweep = 0;

  constructor(now: () => number = wallClockMs, table?: SharedCounterTable) {
    this.now = now;
    this.table = table;
    this.events.setMaxListeners(0);
  }

  /** Whether sweep() has work: checked inline on every decision, so the number is not boxed for a call that returns at once. */
  sweepDue(nowUs: number): boolean {
    return nowUs - this.#lastSweep >= 1_000_000;
  }

  /** Drops expired counters now and then, so idle keys cost nothing (Redis does it with PX/PEXPIRE). */
  sweep(nowUs: number): void {
    if (!this.sweepDue(nowUs)) return;
    this.#lastSweep = nowUs;
    for (const [k, v] of this.gcra) if (v.expiresUs <= nowUs) this.gcra.delete(k);
    for (const [k, v] of this.windows) if (v.expiresUs <= nowUs) this.windows.delete(k);
  }
}

export class MemoryBackend implements StateBackend {
  readonly kind = 'memory' as const;
  readonly store: MemoryStore;
  /** consumeNow's scratch: decisions are synchronous, one at a time. */
  readonly #window = newFixedWindowScratch();

  constructor(store: MemoryStore = new MemoryStore()) {
    this.store = store;
  }

  isHealthy(): boolean {
    return true;
  }

  consume(spec: LimitSpec, hits: number, options: ConsumeOptions = {}): Promise<ConsumeResult> {
    return Promise.resolve(this.consumeNow(spec, hits, minGrantOf(hits, options)));
  }

  /**
   * Synchronous form; the limiter's memory fast path uses it to skip a promise per decision. With `into`, the answer is
   * written there and returned (a fixed-window decision then allocates nothing); otherwise it is a new object.
   */
  consumeNow(spec: LimitSpec, hits: number, minGrant: number, into?: WritableConsumeResult): ConsumeResult {
    const s = this.store;
    const nowUs = Math.floor(s.now() * 1000);
    const table = s.table;
    if (table !== undefined) return table.withLock(() => this.#decideShared(table, spec, hits, minGrant, nowUs));
    if (s.sweepDue(nowUs)) s.sweep(nowUs);
    if (spec.algorithm === 'gcra') {
      const entry = s.gcra.get(spec.id);
      const stored = entry !== undefined && entry.expiresUs > nowUs ? entry.tat : undefined;
      const out = gcraDecide(stored, nowUs, gcraParams(spec), hits, minGrant);
      if (out.tat !== undefined) s.gcra.set(spec.id, { tat: out.tat, expiresUs: out.tat });
      return { ...out.result, decidedAtMs: nowUs / 1000 };
    }
    const windowUs = spec.windowMs * 1000;
    const stored = s.windows.get(spec.id);
    const o = this.#window;
    fixedWindowDecideInto(stored === undefined ? Number.NaN : stored.window, stored === undefined ? 0 : stored.count, nowUs, windowUs, spec.limit, hits, minGrant, o);
    if (o.granted > 0) {
      // The entry is this store's own object: updated in place, one allocation fewer per admitted request.
      if (stored !== undefined) {
        stored.window = o.window;
        stored.count = o.count;
        stored.expiresUs = (o.window + 1) * windowUs;
      } else s.windows.set(spec.id, { window: o.window, count: o.count, expiresUs: (o.window + 1) * windowUs });
    }
    if (into === undefined) return { allowed: o.allowed, granted: o.granted, remaining: o.remaining, resetMs: o.resetMs, retryAfterMs: o.retryAfterMs, decidedAtMs: nowUs / 1000 };
    into.allowed = o.allowed;
    into.granted = o.granted;
    into.remaining = o.remaining;
    into.resetMs = o.resetMs;
    into.retryAfterMs = o.retryAfterMs;
    into.decidedAtMs = nowUs / 1000;
    return into;
  }

  /** The same decisions on the process-wide table; runs under its lock, so read-decide-write is atomic across threads. */
  #decideShared(table: SharedCounterTable, spec: LimitSpec, hits: number, minGrant: number, nowUs: number): ConsumeResult {
    if (spec.algorithm === 'gcra') {
      const out = gcraDecide(table.read(COUNTER_KINDS.gcra, spec.id, nowUs)?.a, nowUs, gcraParams(spec), hits, minGrant);
      if (out.tat !== undefined) table.write(COUNTER_KINDS.gcra, spec.id, out.tat, 0, out.tat, nowUs);
      return { ...out.result, decidedAtMs: nowUs / 1000 };
    }
    const windowUs = spec.windowMs * 1000;
    const stored = table.read(COUNTER_KINDS.window, spec.id, nowUs);
    const out = fixedWindowDecide(stored === undefined ? undefined : { window: stored.a, count: stored.b }, nowUs, windowUs, spec.limit, hits, minGrant);
    if (out.write !== undefined) table.write(COUNTER_KINDS.window, spec.id, out.write.window, out.write.count, (out.write.window + 1) * windowUs, nowUs);
    return { ...out.result, decidedAtMs: nowUs / 1000 };
  }

  #entry(name: string): BreakerEntry {
    let e = this.store.breakers.get(name);
    if (e === undefined) {
      e = { state: 'CLOSED', generation: 0, until: 0, probeOwner: undefined, probeUntil: 0, halfOpenSuccesses: 0, buckets: new Map(), nodes: new Map() };
      this.store.breakers.set(name, e);
    }
    return e;
  }

  #record(name: string, e: BreakerEntry, now: number): BreakerRecord {
    return { name, state: e.state, generation: e.generation, openRemainingMs: e.state === 'OPEN' && e.until > now ? e.until - now : 0 };
  }

  #transition(name: string, e: BreakerEntry, next: BreakerState, openMs: number, now: number): void {
    e.state = next;
    e.generation++;
    e.until = next === 'OPEN' ? now + openMs : 0;
    e.halfOpenSuccesses = 0;
    if (next !== 'HALF_OPEN') {
      e.buckets.clear();
      e.nodes.clear();
    }
    const record = this.#record(name, e, now);
    // Pub/sub is asynchronous in Redis too; delivering on a later tick keeps callers' re-entrancy the same.
    queueMicrotask(() => this.store.events.emit('breaker', record));
  }

  breakerFlush(name: string, node: string, successes: number, failures: number, t: BreakerThresholds): Promise<BreakerFlushResult> {
    const now = Math.floor(this.store.now());
    const e = this.#entry(name);
    const bucketMs = Math.max(100, Math.floor(t.windowMs / 10));
    const bucket = Math.floor(now / bucketMs);
    const b = e.buckets.get(bucket) ?? { successes: 0, failures: 0 };
    b.successes += successes;
    b.failures += failures;
    e.buckets.set(bucket, b);
    if (failures > 0) e.nodes.set(node, now);
    const oldest = bucket - Math.ceil(t.windowMs / bucketMs) + 1;
    let calls = 0;
    let fails = 0;
    for (const [k, v] of e.buckets) {
      if (k < oldest) e.buckets.delete(k);
      else {
        calls += v.successes + v.failures;
        fails += v.failures;
      }
    }
    let nodes = 0;
    for (const [k, at] of e.nodes) {
      if (at >= now - t.windowMs) nodes++;
      else e.nodes.delete(k);
    }
    if (e.state === 'CLOSED' && calls >= t.minimumCalls && fails * 100 >= t.failureRateThreshold * calls && nodes >= t.minReportingNodes) {
      this.#transition(name, e, 'OPEN', t.openMs, now);
    }
    return Promise.resolve({ record: this.#record(name, e, now), calls, failures: fails, reportingNodes: nodes });
  }

  breakerGet(names: readonly string[]): Promise<BreakerRecord[]> {
    const now = Math.floor(this.store.now());
    return Promise.resolve(names.map((n) => this.#record(n, this.#entry(n), now)));
  }

  breakerAcquireProbe(name: string, owner: string, ttlMs: number): Promise<BreakerProbeResult> {
    const now = Math.floor(this.store.now());
    const e = this.#entry(name);
    if (e.state === 'CLOSED' || (e.state === 'OPEN' && e.until > now)) return Promise.resolve({ acquired: false, record: this.#record(name, e, now) });
    if (e.probeOwner !== undefined && e.probeUntil > now) return Promise.resolve({ acquired: false, record: this.#record(name, e, now) });
    e.probeOwner = owner;
    e.probeUntil = now + ttlMs;
    if (e.state === 'OPEN') this.#transition(name, e, 'HALF_OPEN', 0, now);
    return Promise.resolve({ acquired: true, record: this.#record(name, e, now) });
  }

  breakerProbeResult(name: string, owner: string, success: boolean, requiredSuccesses: number, openMs: number): Promise<BreakerRecord> {
    const now = Math.floor(this.store.now());
    const e = this.#entry(name);
    if (e.probeOwner === owner) {
      e.probeOwner = undefined;
      e.probeUntil = 0;
    }
    if (e.state === 'HALF_OPEN') {
      if (!success) this.#transition(name, e, 'OPEN', openMs, now);
      else if (++e.halfOpenSuccesses >= requiredSuccesses) this.#transition(name, e, 'CLOSED', 0, now);
    }
    return Promise.resolve(this.#record(name, e, now));
  }

  onBreakerChange(listener: BreakerListener): () => void {
    this.store.events.on('breaker', listener);
    return () => this.store.events.off('breaker', listener);
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
