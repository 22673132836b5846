/** Circuit breakers shared across nodes: every request is decided from local state; outcomes flow to Redis windows in batches, transitions come back by pub/sub with a polling backstop, and HALF_OPEN has one probe slot cluster-wide. */
import type { CircuitBreakerSettings, CircuitBreakersConfig } from '../config/config-schema.js';
import { CIRCUIT_BREAKER_DEFAULTS } from '../config/defaults.js';
import type { Logger } from '../log.js';
import type { MetricsRegistry } from '../telemetry/metrics-registry.js';
import { OutcomeWindow } from './outcome-window.js';
import type { BreakerRecord, BreakerState, StateBackend } from './state-backend.js';

export interface BreakerPermit {
  readonly name: string;
  readonly allowed: boolean;
  /** The state the decision was made in. */
  readonly state: BreakerState;
  /** This call is the cluster's one HALF_OPEN probe; its outcome decides CLOSED or OPEN. */
  readonly probe: boolean;
  /** Probe slot owner, for record(). */
  readonly owner: string | undefined;
}

export interface BreakerTransition {
  readonly name: string;
  readonly from: BreakerState;
  readonly to: BreakerState;
  readonly generation: number;
  /** 'shared' when taken from the backend, 'local' when decided alone because the backend was unreachable. */
  readonly source: 'shared' | 'local';
}

interface Breaker {
  readonly name: string;
  settings: CircuitBreakerSettings;
  state: BreakerState;
  generation: number;
  /** Local ms when OPEN ends; the next acquire after it tries for the probe slot. */
  openUntil: number;
  /** Set while this node holds (or is asking for) the probe slot; cleared on outcome or after probeTimeoutMs. */
  probeOwner: string | undefined;
  probeUntil: number;
  localSuccesses: number;
  window: OutcomeWindow;
  pendingSuccesses: number;
  pendingFailures: number;
  /** Polls that reported a lower generation in a row: twice means Redis lost its state, not a race. */
  lowerPolls: number;
}

/** Marks "another node holds the probe slot" so HALF_OPEN costs one backend call per PROBE_RETRY_MS, not one per request. */
const PROBE_ELSEWHERE = '';
const PROBE_RETRY_MS = 100;

const MAX_BREAKERS = 10_000;

/** A fresh CLOSED breaker; callers beyond MAX_BREAKERS get one that is never stored (untracked). */
function newBreaker(name: string, settings: CircuitBreakerSettings): Breaker {
  return {
    name,
    settings,
    state: 'CLOSED',
    generation: 0,
    openUntil: 0,
    probeOwner: undefined,
    probeUntil: 0,
    localSuccesses: 0,
    window: new OutcomeWindow(settings.windowMs),
    pendingSuccesses: 0,
    pendingFailures: 0,
    lowerPolls: 0,
  };
}

const STATE_VALUE: Record<BreakerState, number> = { CLOSED: 0, OPEN: 1, HALF_OPEN: 2 };

export interface SharedBreakersOptions {
  nodeName: string;
  config?: CircuitBreakersConfig;
  metrics: MetricsRegistry;
  logger: Logger;
}

export class SharedBreakers {
  readonly #backend: StateBackend;
  readonly #node: string;
  readonly #logger: Logger;
  readonly #breakers = new Map<string, Breaker>();
  readonly #listeners = new Set<(t: BreakerTransition) => void>();
  #config: CircuitBreakersConfig;
  #probeSeq = 0;
  #flushTimer: NodeJS.Timeout | undefined;
  #pollTimer: NodeJS.Timeout | undefined;
  #flushing = false;
  #capWarned = false;
  #polling = false;
  #closed = false;
  readonly #unsubscribe: () => void;
  readonly #m: {
    state: ReturnType<MetricsRegistry['gauge']>;
    transitions: ReturnType<MetricsRegistry['counter']>;
    rejected: ReturnType<MetricsRegistry['counter']>;
    probes: ReturnType<MetricsRegistry['counter']>;
    degraded: ReturnType<MetricsRegistry['counter']>;
  };

  constructor(backend: StateBackend, options: SharedBreakersOptions) {
    this.#backend = backend;
    this.#node = options.nodeName;
    this.#logger = options.logger;
    this.#config = options.config ?? { defaults: { ...CIRCUIT_BREAKER_DEFAULTS }, upstreams: [] };
    const m = options.metrics;
    this.#m = {
      state: m.gauge('weft_breaker_state', 'Circuit-breaker state as this node sees it (0 closed, 1 open, 2 half-open)', ['name']),
      transitions: m.counter('weft_breaker_transitions_total', 'Circuit-breaker transitions seen by this node', ['name', 'to', 'source']),
      rejected: m.counter('weft_breaker_rejected_total', 'Calls refused by an open breaker', ['name', 'state']),
      probes: m.counter('weft_breaker_probes_total', 'HALF_OPEN probe calls by outcome', ['name', 'result']),
      degraded: m.counter('weft_breaker_degraded_total', 'Breaker decisions taken locally because the shared backend was unreachable', ['name', 'op']),
    };
    this.#unsubscribe = backend.onBreakerChange((r) => this.#adopt(r, 'push'));
    this.#scheduleFlush();
    this.#schedulePoll();
  }

  /** New tuning (config reload); states stay, and local counts too unless the window length changed. */
  update(config: CircuitBreakersConfig): void {
    this.#config = config;
    for (const b of this.#breakers.values()) {
      const next = this.#settings(b.name);
      if (next.windowMs !== b.settings.windowMs) b.window = new OutcomeWindow(next.windowMs);
      b.settings = next;
    }
  }

  onTransition(listener: (t: BreakerTransition) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  state(name: string): BreakerState {
    return this.#get(name).state;
  }

  #settings(name: string): CircuitBreakerSettings {
    const own = this.#config.upstreams.find((u) => u.name === name);
    if (own === undefined) return this.#config.defaults;
    const { name: _n, ...overrides } = own;
    return { ...this.#config.defaults, ...Object.fromEntries(Object.entries(overrides).filter(([, v]) => v !== undefined)) };
  }

  #get(name: string): Breaker {
    let b = this.#breakers.get(name);
    if (b === undefined) {
      if (this.#breakers.size >= MAX_BREAKERS) {
        // Names can come from plugins; past the cap an unknown name gets an untracked, always-closed breaker.
        if (!this.#capWarned) this.#logger.warn({ max: MAX_BREAKERS }, 'too many circuit breakers, new names are not tracked');
        this.#capWarned = true;
        return newBreaker(name, this.#config.defaults);
      }
      const settings = this.#settings(name);
      b = newBreaker(name, settings);
      this.#breakers.set(name, b);
      this.#m.state.set({ name }, 0);
    }
    return b;
  }

  /** Decides one call. Synchronous except when this node asks for the HALF_OPEN probe slot. */
  acquire(name: string): BreakerPermit | Promise<BreakerPermit> {
    const b = this.#get(name);
    if (b.state === 'CLOSED') return { name, allowed: true, state: 'CLOSED', probe: false, owner: undefined };
    const now = performance.now();
    if (b.state === 'OPEN' && now < b.openUntil) return this.#reject(b);
    if (b.probeOwner !== undefined && now < b.probeUntil) return this.#reject(b);
    const owner = `${this.#node}:${++this.#probeSeq}`;
    b.probeOwner = owner;
    b.probeUntil = now + b.settings.probeTimeoutMs;
    if (!this.#backend.isHealthy()) return this.#localProbe(b, owner);
    return this.#backend.breakerAcquireProbe(name, owner, b.settings.probeTimeoutMs).then(
      (r) => {
        this.#adopt(r.record, 'reply');
        if (!r.acquired) {
          // Someone else probes (or the breaker closed): ask again only after a pause, not on every request.
          if (b.probeOwner === owner) {
            b.probeOwner = PROBE_ELSEWHERE;
            b.probeUntil = performance.now() + Math.min(PROBE_RETRY_MS, b.settings.probeTimeoutMs);
          }
          return this.#reject(b);
        }
        this.#m.probes.inc({ name, result: 'started' });
        return { name, allowed: true, state: 'HALF_OPEN' as const, probe: true, owner };
      },
      () => this.#localProbe(b, owner),
    );
  }

  /** The backend is unreachable: behave as an uncoordinated local breaker, one probe per node. */
  #localProbe(b: Breaker, owner: string): BreakerPermit {
    this.#m.degraded.inc({ name: b.name, op: 'probe' });
    if (b.state !== 'HALF_OPEN') this.#set(b, 'HALF_OPEN', b.generation, 0, 'local');
    this.#m.probes.inc({ name: b.name, result: 'started' });
    return { name: b.name, allowed: true, state: 'HALF_OPEN', probe: true, owner: `local:${owner}` };
  }

  #reject(b: Breaker): BreakerPermit {
    this.#m.rejected.inc({ name: b.name, state: b.state });
    return { name: b.name, allowed: false, state: b.state, probe: false, owner: undefined };
  }

  /** Reports the outcome of a call admitted by acquire(). */
  record(permit: BreakerPermit, success: boolean): void {
    if (!permit.allowed) return;
    const b = this.#get(permit.name);
    if (permit.probe) {
      this.#probeOutcome(b, permit, success);
      return;
    }
    const now = performance.now();
    b.window.add(success, now);
    if (success) b.pendingSuccesses++;
    else b.pendingFailures++;
    if (!success && b.state === 'CLOSED' && this.#localTrips(b, now)) {
      if (this.#backend.isHealthy()) this.#flushSoon();
      else this.#breakLocally(b);
    }
  }

  /** The shared window is out of reach: the node's own window decides, for this node only. */
  #breakLocally(b: Breaker): void {
    this.#m.degraded.inc({ name: b.name, op: 'flush' });
    if (b.state !== 'CLOSED' || !this.#localTrips(b, performance.now())) return;
    this.#m.degraded.inc({ name: b.name, op: 'open' });
    this.#set(b, 'OPEN', b.generation, b.settings.openMs, 'local');
  }

  #localTrips(b: Breaker, now: number): boolean {
    const { calls, failures } = b.window.totals(now);
    return calls >= b.settings.minimumCalls && failures * 100 >= b.settings.failureRateThreshold * calls;
  }

  #probeOutcome(b: Breaker, permit: BreakerPermit, success: boolean): void {
    this.#m.probes.inc({ name: b.name, result: success ? 'success' : 'failure' });
    const owner = permit.owner ?? '';
    const local = owner.startsWith('local:');
    const finishLocally = (): void => {
      if (b.probeOwner === owner || local) b.probeOwner = undefined;
      if (!success) this.#set(b, 'OPEN', b.generation, b.settings.openMs, 'local');
      else if (++b.localSuccesses >= b.settings.halfOpenProbes) this.#set(b, 'CLOSED', b.generation, 0, 'local');
    };
    if (local) {
      finishLocally();
      return;
    }
    this.#backend.breakerProbeResult(b.name, owner, success, b.settings.halfOpenProbes, b.settings.openMs).then(
      (record) => {
        if (b.probeOwner === owner) b.probeOwner = undefined;
        this.#adopt(record, 'reply');
      },
      () => {
        this.#m.degraded.inc({ name: b.name, op: 'probe_result' });
        finishLocally();
      },
    );
  }

  /** Takes the shared record if it is newer (push, reply) or differs (poll, twice in a row when older). */
  #adopt(r: BreakerRecord, via: 'push' | 'reply' | 'poll'): void {
    const b = this.#breakers.get(r.name);
    if (b === undefined) return;
    if (r.generation < b.generation) {
      if (via !== 'poll' || ++b.lowerPolls < 2) return;
    }
    b.lowerPolls = 0;
    if (r.generation === b.generation && r.state === b.state) {
      if (r.state === 'OPEN') b.openUntil = performance.now() + r.openRemainingMs;
      return;
    }
    if (r.generation === b.generation && via !== 'poll') return;
    this.#set(b, r.state, r.generation, r.openRemainingMs, 'shared');
  }

  #set(b: Breaker, to: BreakerState, generation: number, openMs: number, source: 'shared' | 'local'): void {
    const from = b.state;
    b.generation = generation;
    b.state = to;
    if (to === 'OPEN') b.openUntil = performance.now() + openMs;
    if (to !== 'HALF_OPEN') {
      b.localSuccesses = 0;
      b.probeOwner = undefined;
    }
    if (to === 'CLOSED') {
      b.window.reset();
      b.pendingFailures = 0;
      b.pendingSuccesses = 0;
    }
    if (from === to) return;
    this.#m.state.set({ name: b.name }, STATE_VALUE[to]);
    this.#m.transitions.inc({ name: b.name, to, source });
    this.#logger.info({ breaker: b.name, from, to, generation, source }, 'circuit breaker transition');
    const t: BreakerTransition = { name: b.name, from, to, generation, source };
    for (const l of this.#listeners) l(t);
  }

  #flushSoon(): void {
    if (this.#closed || this.#flushing) return;
    if (this.#flushTimer !== undefined) clearTimeout(this.#flushTimer);
    this.#flushTimer = undefined;
    this.#flush().finally(() => this.#scheduleFlush()).catch(() => undefined);
  }

  #scheduleFlush(): void {
    if (this.#closed || this.#flushTimer !== undefined) return;
    this.#flushTimer = setTimeout(() => {
      this.#flushTimer = undefined;
      this.#flush()
        .finally(() => this.#scheduleFlush())
        .catch(() => undefined);
    }, this.#config.defaults.flushIntervalMs);
    this.#flushTimer.unref();
  }

  /** Sends pending outcome counts; counts that cannot be sent are dropped, never replayed late. */
  async #flush(): Promise<void> {
    if (this.#flushing) return;
    this.#flushing = true;
    try {
      const work: Promise<void>[] = [];
      for (const b of this.#breakers.values()) {
        if (b.pendingSuccesses === 0 && b.pendingFailures === 0) continue;
        const s = b.pendingSuccesses;
        const f = b.pendingFailures;
        b.pendingSuccesses = 0;
        b.pendingFailures = 0;
        if (!this.#backend.isHealthy()) {
          this.#breakLocally(b);
          continue;
        }
        work.push(
          this.#backend.breakerFlush(b.name, this.#node, s, f, b.settings).then(
            (r) => this.#adopt(r.record, 'reply'),
            () => this.#breakLocally(b),
          ),
        );
      }
      await Promise.all(work);
    } finally {
      this.#flushing = false;
    }
  }

  #schedulePoll(): void {
    if (this.#closed) return;
    this.#pollTimer = setTimeout(() => {
      this.#poll()
        .finally(() => this.#schedulePoll())
        .catch(() => undefined);
    }, this.#config.defaults.pollIntervalMs);
    this.#pollTimer.unref();
  }

  /** The backstop for lost pub/sub messages (at-most-once delivery, subscriber reconnects). */
  async #poll(): Promise<void> {
    if (this.#polling || this.#breakers.size === 0 || !this.#backend.isHealthy()) return;
    this.#polling = true;
    try {
      const records = await this.#backend.breakerGet([...this.#breakers.keys()]);
      for (const r of records) this.#adopt(r, 'poll');
    } catch {
      // counted by the backend; the next poll tries again
    } finally {
      this.#polling = false;
    }
  }

  /** Sends what is pending and stops the timers. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#flushTimer !== undefined) clearTimeout(this.#flushTimer);
    if (this.#pollTimer !== undefined) clearTimeout(this.#pollTimer);
    this.#unsubscribe();
    await this.#flush().catch(() => undefined);
  }
}
