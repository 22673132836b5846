/** Descriptor rate limiting over a StateBackend: strict (every decision in the backend) or local (leased tokens), with an over-limit cache, failMode on backend trouble, metrics and RateLimit headers. */
import type { RateLimitDomainConfig } from '../config/config-schema.js';
import type { Logger } from '../log.js';
import { BatchedCounter, type BatchedSeries } from '../telemetry/batched-counter.js';
import type { MetricsRegistry } from '../telemetry/metrics-registry.js';
import { LeasePool } from './lease-pool.js';
import { OverLimitCache } from './over-limit-cache.js';
import { rateLimitHeaders, type HeaderSource } from './rate-limit-headers.js';
import { counterSpec, RateLimitRules, UNIT_MS, type CompiledRule, type RateLimitEntry, type RateLimitUnit } from './rate-limit-rules.js';
import { newConsumeResult, type ConsumeResult, type LimitSpec, type StateBackend } from './state-backend.js';
import { MemoryBackend } from './state-memory.js';

export interface RateLimitDescriptor {
  readonly entries: readonly RateLimitEntry[];
  /** Per-descriptor hits; 0 checks without counting. Wins over the request's hitsAddend. */
  readonly hitsAddend?: number;
  /** Envoy's RateLimitOverride: this limit instead of the configured one (strict, fixed window). */
  readonly limit?: { readonly requestsPerUnit: number; readonly unit: RateLimitUnit };
}

export interface RateLimitRequest {
  readonly domain: string;
  readonly descriptors: readonly RateLimitDescriptor[];
  /** Hits for every descriptor without its own; unset or 0 means 1 (Envoy). */
  readonly hitsAddend?: number;
}

export type RateLimitCode = 'OK' | 'OVER_LIMIT';

/** Where a decision came from: the `source` label of weft_ratelimit_decisions_total and what callers log. */
export const DECISION_SOURCES = ['backend', 'lease', 'cache', 'unlimited', 'no-rule', 'fail-open', 'fail-closed', 'fail-local'] as const;
export type DecisionSource = (typeof DECISION_SOURCES)[number];
/** Each source's position in DECISION_SOURCES (the decision counters' slots, the binary answer's source byte). */
export const DECISION_SOURCE_INDEX = Object.fromEntries(DECISION_SOURCES.map((s, i) => [s, i])) as Record<DecisionSource, number>;

export interface DescriptorStatus {
  readonly code: RateLimitCode;
  readonly rule: CompiledRule | undefined;
  readonly remaining: number;
  readonly resetMs: number;
  readonly retryAfterMs: number;
  readonly source: DecisionSource;
  /** Backend clock of the decision when the backend made it (strict mode). */
  readonly decidedAtMs?: number;
}

export interface RateLimitResponse {
  readonly overallCode: RateLimitCode;
  readonly statuses: readonly DescriptorStatus[];
  /** RateLimit-Policy, RateLimit and (when over) Retry-After, lower-case names. */
  readonly headers: Readonly<Record<string, string>>;
  /** What `headers` are made of (the binary answer writes them without the strings); undefined when there are none. */
  readonly headerSource?: HeaderSource | undefined;
}

/**
 * A response whose header strings are made when first read: the binary foreign-function answer never reads them. A
 * prepared request keeps one and refills it (set) for each synchronous answer.
 */
class Response implements RateLimitResponse {
  #headers: Record<string, string> | undefined;
  constructor(
    public overallCode: RateLimitCode,
    public statuses: readonly DescriptorStatus[],
    public headerSource: HeaderSource | undefined,
  ) {}

  set(overallCode: RateLimitCode, statuses: readonly DescriptorStatus[], headerSource: HeaderSource | undefined): this {
    this.overallCode = overallCode;
    this.statuses = statuses;
    this.headerSource = headerSource;
    this.#headers = undefined;
    return this;
  }

  get headers(): Readonly<Record<string, string>> {
    return (this.#headers ??= rateLimitHeaders(this.headerSource));
  }
}

/** A descriptor's status that the limiter rewrites: one per descriptor of a prepared request, for its synchronous answers. */
class StatusSlot implements DescriptorStatus {
  code: RateLimitCode = 'OK';
  rule: CompiledRule | undefined = undefined;
  remaining = 0;
  resetMs = 0;
  retryAfterMs = 0;
  source: DecisionSource = 'backend';
  decidedAtMs: number | undefined = undefined;
}

/** A HeaderSource that the limiter rewrites (one per prepared request). */
class HeaderSourceSlot implements HeaderSource {
  policyName = '';
  quota = 0;
  windowMs = 0;
  remaining = 0;
  resetMs = 0;
  retryAfterMs = 0;
  overLimit = false;
}

/**
 * A request resolved against the limiter's rules (each descriptor's rule, counter and hits) once, for a caller that
 * sends the same request again and again (the binary foreign call keeps these by payload). The limiter resolves it
 * again after its rules change.
 */
export class PreparedRateLimitRequest {
  /** The rules the resolutions were made against; the limiter's own object, compared by identity. */
  rules: unknown = undefined;
  readonly rule: (CompiledRule | undefined)[] = [];
  /** The counter of each descriptor whose rule counts; undefined otherwise. */
  readonly spec: (LimitSpec | undefined)[] = [];
  readonly hits: number[] = [];
  /**
   * What a synchronous answer of decidePrepared(p, true) is made of, rewritten by the next one: a status per
   * descriptor, their array, the header source and the response.
   */
  readonly slots: StatusSlot[] = [];
  readonly statuses: (DescriptorStatus | Promise<DescriptorStatus>)[] = [];
  readonly headerSource = new HeaderSourceSlot();
  readonly response = new Response('OK', [], undefined);
  constructor(readonly request: RateLimitRequest) {}
}

export interface RateLimiterOptions {
  domains: readonly RateLimitDomainConfig[];
  defaultFailMode: 'open' | 'closed';
  /** Budget of one backend decision; a strict request never waits longer. */
  timeoutMs: number;
  metrics: MetricsRegistry;
  logger: Logger;
  leaseFraction?: number;
}

const UNLIMITED_REMAINING = 0xffffffff;
/** Whether a decision under `rule` touches a counter (it has one: no rule, unlimited and a limit of 0 do not). */
const counted = (rule: CompiledRule | undefined): rule is CompiledRule => rule !== undefined && !rule.unlimited && rule.requestsPerUnit !== 0;
const MAX_CACHED_SPECS = 10_000;

interface DecisionSlots {
  /** The label value: the domain, or UNKNOWN_DOMAIN. */
  readonly domain: string;
  readonly children: (BatchedSeries | undefined)[];
  readonly nearLimit: BatchedSeries;
}
const UNKNOWN_DOMAIN = '(unconfigured)';
/** envoyproxy/ratelimit's NEAR_LIMIT_RATIO default. */
const NEAR_LIMIT_RATIO = 0.8;

/** A status with these fields: written into `slot` when given (and returned), otherwise a new object. */
function status(
  slot: StatusSlot | undefined, code: RateLimitCode, rule: CompiledRule | undefined, remaining: number, resetMs: number, retryAfterMs: number,
  source: DecisionSource, decidedAtMs: number | undefined,
): DescriptorStatus {
  if (slot === undefined) return decidedAtMs === undefined ? { code, rule, remaining, resetMs, retryAfterMs, source } : { code, rule, remaining, resetMs, retryAfterMs, source, decidedAtMs };
  slot.code = code;
  slot.rule = rule;
  slot.remaining = remaining;
  slot.resetMs = resetMs;
  slot.retryAfterMs = retryAfterMs;
  slot.source = source;
  slot.decidedAtMs = decidedAtMs;
  return slot;
}

export class RateLimiter {
  readonly #backend: StateBackend;
  readonly #options: RateLimiterOptions;
  readonly #cache = new OverLimitCache();
  /** Decides failMode-local rules while the backend is unreachable; its counters are this node's alone. */
  readonly #fallback = new MemoryBackend();
  readonly #leases: LeasePool;
  #rules: RateLimitRules;
  readonly #decisions: ReturnType<MetricsRegistry['counter']>;
  readonly #degraded: ReturnType<MetricsRegistry['counter']>;
  readonly #backendCalls: ReturnType<MetricsRegistry['counter']>;
  readonly #nearLimit: ReturnType<MetricsRegistry['counter']>;
  /**
   * Decision counters per requested domain, one slot per (code, mode, source): prom-client hashes a label object on
   * every inc otherwise, and building a key string per decision cost as much. Only configured domains get an entry
   * (callers choose the domain); cleared when the rules change.
   */
  readonly #decisionSlots = new Map<string, DecisionSlots>();
  readonly #unknownSlots: DecisionSlots;
  readonly #decisionBatch: BatchedCounter;
  readonly #strictCalls: BatchedSeries;
  /** Counter specs per rule and descriptor values: the id is built, escaped and hashed once per value, not per decision. */
  #specs = new WeakMap<CompiledRule, Map<string, LimitSpec>>();
  /** What the memory backend's consumeNow writes its answer into: read at once, before any other decision. */
  readonly #consumed = newConsumeResult();

  constructor(backend: StateBackend, options: RateLimiterOptions) {
    this.#backend = backend;
    this.#options = options;
    this.#rules = new RateLimitRules(options.domains, options.defaultFailMode);
    const m = options.metrics;
    this.#decisions = m.counter('weft_ratelimit_decisions_total', 'Rate-limit decisions by domain, code, mode and source', ['domain', 'code', 'mode', 'source']);
    this.#degraded = m.counter('weft_ratelimit_degraded_total', 'Decisions made by failMode because the backend could not answer in time', [
      'domain',
      'fail_mode',
      'reason',
    ]);
    this.#nearLimit = m.counter('weft_ratelimit_near_limit_total', 'Admitted decisions with less than 20% of the limit left (envoyproxy/ratelimit near_limit)', ['domain']);
    this.#backendCalls = m.counter('weft_ratelimit_backend_calls_total', 'Backend decision calls by mode (strict decision or local lease)', ['mode']);
    this.#strictCalls = BatchedCounter.of(this.#backendCalls).series({ mode: 'strict' });
    this.#decisionBatch = BatchedCounter.of(this.#decisions);
    this.#unknownSlots = this.#newSlots(UNKNOWN_DOMAIN);
    this.#leases = new LeasePool(backend, {
      budgetMs: options.timeoutMs,
      ...(options.leaseFraction === undefined ? {} : { leaseFraction: options.leaseFraction }),
      onFetch: () => this.#backendCalls.inc({ mode: 'local' }),
    });
  }

  /** Swaps the rules (config reload); counters, leases and cached denials of unchanged descriptors carry over. */
  update(domains: readonly RateLimitDomainConfig[]): void {
    this.#rules = new RateLimitRules(domains, this.#options.defaultFailMode);
    this.#decisionSlots.clear();
    this.#specs = new WeakMap();
  }

  get backend(): StateBackend {
    return this.#backend;
  }

  /** All decisions for the request; synchronous when every descriptor was answered locally. */
  decide(request: RateLimitRequest): RateLimitResponse | Promise<RateLimitResponse> {
    const statuses: (DescriptorStatus | Promise<DescriptorStatus>)[] = [];
    let pending = false;
    for (const d of request.descriptors) {
      const s = this.#decideOne(request, d);
      if (s instanceof Promise) pending = true;
      statuses.push(s);
    }
    return this.#answer(statuses, pending);
  }

  /** The response once every status is known: now when none is `pending`. */
  #answer(statuses: (DescriptorStatus | Promise<DescriptorStatus>)[], pending: boolean): RateLimitResponse | Promise<RateLimitResponse> {
    if (!pending) return this.#respond(statuses as DescriptorStatus[], undefined);
    return Promise.all(statuses.map((s) => Promise.resolve(s))).then((all) => this.#respond(all, undefined));
  }

  /** `request` with its descriptors resolved now, for decidePrepared. */
  prepare(request: RateLimitRequest): PreparedRateLimitRequest {
    const p = new PreparedRateLimitRequest(request);
    this.#resolve(p);
    return p;
  }

  /**
   * decide() of a prepared request: the rule match and counter lookup were done once (again after a rules change).
   * `reuse`: a synchronous answer is made of `p`'s own objects (no allocation) and is valid only until the next decision
   * of `p`, for a caller that reads it at once (the binary foreign call encodes it before returning); a deferred answer
   * is always new.
   */
  decidePrepared(p: PreparedRateLimitRequest, reuse = false): RateLimitResponse | Promise<RateLimitResponse> {
    if (p.rules !== this.#rules) this.#resolve(p);
    const domain = p.request.domain;
    const n = p.hits.length;
    const statuses = reuse ? p.statuses : new Array<DescriptorStatus | Promise<DescriptorStatus>>(n);
    let pending = false;
    for (let i = 0; i < n; i++) {
      const s = this.#decideRule(domain, p.rule[i], p.spec[i], p.hits[i]!, reuse ? p.slots[i] : undefined);
      if (s instanceof Promise) pending = true;
      statuses[i] = s;
    }
    if (!pending) return this.#respond(statuses as DescriptorStatus[], reuse ? p : undefined);
    // The answer comes later, after other decisions of `p` may have rewritten its objects: it gets copies.
    return this.#answer(reuse ? statuses.map((s) => (s instanceof StatusSlot ? { ...s } : s)) : statuses, true);
  }

  #resolve(p: PreparedRateLimitRequest): void {
    const request = p.request;
    const n = request.descriptors.length;
    p.rule.length = p.spec.length = p.hits.length = p.statuses.length = n;
    while (p.slots.length < n) p.slots.push(new StatusSlot());
    p.slots.length = n;
    for (let i = 0; i < n; i++) {
      const d = request.descriptors[i]!;
      const rule = this.#ruleOf(request.domain, d);
      p.rule[i] = rule;
      p.spec[i] = counted(rule) ? this.#spec(rule, d.entries) : undefined;
      p.hits[i] = this.#hits(request, d);
    }
    p.rules = this.#rules;
  }

  shouldRateLimit(request: RateLimitRequest): Promise<RateLimitResponse> {
    return Promise.resolve(this.decide(request));
  }

  #hits(request: RateLimitRequest, d: RateLimitDescriptor): number {
    if (d.hitsAddend !== undefined) return Math.max(0, Math.floor(d.hitsAddend));
    return Math.max(1, Math.floor(request.hitsAddend ?? 1));
  }

  #decideOne(request: RateLimitRequest, d: RateLimitDescriptor): DescriptorStatus | Promise<DescriptorStatus> {
    const rule = this.#ruleOf(request.domain, d);
    return this.#decideRule(request.domain, rule, counted(rule) ? this.#spec(rule, d.entries) : undefined, this.#hits(request, d), undefined);
  }

  #ruleOf(domain: string, d: RateLimitDescriptor): CompiledRule | undefined {
    return d.limit === undefined ? this.#rules.match(domain, d.entries) : this.#overrideRule(domain, d);
  }

  /**
   * One descriptor's decision under `rule`; `spec` is its counter when counted(rule), undefined otherwise. A synchronous
   * decision is written into `slot` when one is given; a deferred one is always a new object.
   */
  #decideRule(
    domain: string, rule: CompiledRule | undefined, spec: LimitSpec | undefined, hits: number, slot: StatusSlot | undefined,
  ): DescriptorStatus | Promise<DescriptorStatus> {
    if (rule === undefined || spec === undefined) return this.#uncounted(domain, rule, slot);
    if (rule.mode === 'local') {
      const local = this.#leases.tryTake(spec, hits, performance.now());
      if (local !== undefined) {
        return this.#count(status(slot, local.allowed ? 'OK' : 'OVER_LIMIT', rule, local.remaining, local.resetMs, local.retryAfterMs, local.source, undefined), domain);
      }
      return this.#leases.fetch(spec, hits).then(
        () => {
          const after = this.#leases.tryTake(spec, hits, performance.now());
          if (after !== undefined) return this.#count({ code: after.allowed ? 'OK' : 'OVER_LIMIT', rule, ...after }, domain);
          // Only part of the lease was left: fewer tokens than this request needs.
          return this.#count({ code: 'OVER_LIMIT', rule, remaining: 0, resetMs: 0, retryAfterMs: 0, source: 'backend' }, domain);
        },
        (err: unknown) => this.#failed(domain, rule, err, spec, hits),
      );
    }
    // A clock read costs about as much as the rest of a memory decision: only when a denial is cached, or one is made.
    const cached = this.#cache.size === 0 ? undefined : this.#cache.lookup(spec.id, hits, performance.now());
    if (cached !== undefined) return this.#count(status(slot, 'OVER_LIMIT', rule, 0, cached.resetMs, cached.retryAfterMs, 'cache', undefined), domain);
    this.#strictCalls.inc();
    // The embedded backend answers in the same tick: no promise per decision on a single node.
    if (this.#backend instanceof MemoryBackend) {
      let r: ConsumeResult;
      try {
        r = this.#backend.consumeNow(spec, hits, 0, this.#consumed);
      } catch (err) {
        return this.#failed(domain, rule, err, spec, hits);
      }
      return this.#decided(domain, rule, spec, hits, r.allowed ? 0 : performance.now(), r, slot);
    }
    const now = performance.now();
    return this.#backend.consume(spec, hits, { budgetMs: this.#options.timeoutMs }).then(
      (r) => this.#decided(domain, rule, spec, hits, now, r, undefined),
      (err: unknown) => this.#failed(domain, rule, err, spec, hits),
    );
  }

  /** A rule that touches no counter: none matched, unlimited, or a limit of 0. */
  #uncounted(domain: string, rule: CompiledRule | undefined, slot: StatusSlot | undefined): DescriptorStatus {
    if (rule === undefined) return this.#count(status(slot, 'OK', rule, UNLIMITED_REMAINING, 0, 0, 'no-rule', undefined), domain);
    if (rule.unlimited) return this.#count(status(slot, 'OK', rule, UNLIMITED_REMAINING, 0, 0, 'unlimited', undefined), domain);
    return this.#count(status(slot, 'OVER_LIMIT', rule, 0, rule.windowMs, rule.windowMs, 'cache', undefined), domain);
  }

  /** A strict decision the backend made; `now` is when it was asked (read only for a denial). */
  #decided(domain: string, rule: CompiledRule, spec: LimitSpec, hits: number, now: number, r: ConsumeResult, slot: StatusSlot | undefined): DescriptorStatus {
    if (!r.allowed) this.#cache.remember(spec.id, hits, now, r.retryAfterMs, r.resetMs);
    return this.#count(status(slot, r.allowed ? 'OK' : 'OVER_LIMIT', rule, r.remaining, r.resetMs, r.retryAfterMs, 'backend', r.decidedAtMs), domain);
  }

  #spec(rule: CompiledRule, entries: readonly RateLimitEntry[]): LimitSpec {
    let byValues = this.#specs.get(rule);
    if (byValues === undefined) this.#specs.set(rule, (byValues = new Map<string, LimitSpec>()));
    let key = entries[0]!.value;
    for (let i = 1; i < entries.length; i++) key += `\u0000${entries[i]!.value}`;
    let spec = byValues.get(key);
    if (spec === undefined) {
      // Distinct values are unbounded (one per user or address): start over rather than grow without end.
      if (byValues.size >= MAX_CACHED_SPECS) byValues.clear();
      byValues.set(key, (spec = counterSpec(rule, entries)));
    }
    return spec;
  }

  #overrideRule(domain: string, d: RateLimitDescriptor): CompiledRule | undefined {
    const limit = d.limit;
    if (limit === undefined) return undefined;
    const base = this.#rules.match(domain, d.entries);
    return {
      domain,
      name: base?.name ?? `${domain}.override`,
      entries: d.entries.map((e) => ({ key: e.key, value: e.value })),
      requestsPerUnit: limit.requestsPerUnit,
      unit: limit.unit,
      windowMs: UNIT_MS[limit.unit],
      algorithm: 'fixed',
      burst: Math.max(1, limit.requestsPerUnit),
      mode: 'strict',
      failMode: base?.failMode ?? this.#options.defaultFailMode,
      localShare: base?.localShare ?? 1,
      shadowMode: base?.shadowMode ?? false,
      unlimited: false,
      specificity: d.entries.length,
    };
  }

  #failed(domain: string, rule: CompiledRule, err: unknown, spec: LimitSpec, hits: number): DescriptorStatus {
    const reason = (err as { reason?: unknown } | null)?.reason;
    this.#degraded.inc({ domain, fail_mode: rule.failMode, reason: typeof reason === 'string' ? reason : 'internal' });
    this.#options.logger.debug({ err, domain, rule: rule.name }, 'rate-limit backend unavailable, applying failMode');
    if (rule.failMode === 'local') return this.#count(this.#decideAlone(rule, spec, hits), domain);
    return this.#count(
      rule.failMode === 'open'
        ? { code: 'OK', rule, remaining: rule.requestsPerUnit, resetMs: 0, retryAfterMs: 0, source: 'fail-open' }
        : { code: 'OVER_LIMIT', rule, remaining: 0, resetMs: 0, retryAfterMs: 1_000, source: 'fail-closed' },
      domain,
    );
  }

  /**
   * failMode local: the same algorithm on this node's own memory, at localShare of the limit — not a bypass as
   * fail-open is, and not an outage for clients as fail-closed is (rate-limiter-flexible's insurance limiter).
   */
  #decideAlone(rule: CompiledRule, spec: LimitSpec, hits: number): DescriptorStatus {
    const limit = Math.max(1, Math.floor(spec.limit * rule.localShare));
    const burst = Math.max(1, Math.floor(spec.burst * rule.localShare));
    const r = this.#fallback.consumeNow({ ...spec, limit, burst }, hits, 0);
    return { code: r.allowed ? 'OK' : 'OVER_LIMIT', rule, remaining: r.remaining, resetMs: r.resetMs, retryAfterMs: r.retryAfterMs, source: 'fail-local' };
  }

  #slots(requestDomain: string): DecisionSlots {
    let slots = this.#decisionSlots.get(requestDomain);
    if (slots !== undefined) return slots;
    // Domains come from callers (gRPC, plugins): only configured ones become label values.
    if (!this.#rules.hasDomain(requestDomain)) return this.#unknownSlots;
    this.#decisionSlots.set(requestDomain, (slots = this.#newSlots(requestDomain)));
    return slots;
  }

  #newSlots(domain: string): DecisionSlots {
    return { domain, children: [], nearLimit: BatchedCounter.of(this.#nearLimit).series({ domain }) };
  }

  #count(status: DescriptorStatus, requestDomain: string): DescriptorStatus {
    const mode = status.rule?.mode ?? 'none';
    const slots = this.#slots(requestDomain);
    const domain = slots.domain;
    const slot = (status.code === 'OK' ? 0 : 24) + (mode === 'strict' ? 0 : mode === 'local' ? 8 : 16) + DECISION_SOURCE_INDEX[status.source];
    let child = slots.children[slot];
    if (child === undefined) slots.children[slot] = child = this.#decisionBatch.series({ domain, code: status.code, mode, source: status.source });
    child.inc();
    const rule = status.rule;
    if (status.code === 'OK' && rule !== undefined && !rule.unlimited && status.remaining < rule.requestsPerUnit * (1 - NEAR_LIMIT_RATIO)) {
      slots.nearLimit.inc();
    }
    // Shadow mode: evaluated and counted as it would be, then let through.
    return status.code === 'OVER_LIMIT' && status.rule?.shadowMode === true ? { ...status, code: 'OK' } : status;
  }

  /** The response to `statuses`; made of `reuse`'s objects when given (see decidePrepared). */
  #respond(statuses: DescriptorStatus[], reuse: PreparedRateLimitRequest | undefined): RateLimitResponse {
    let overall: RateLimitCode = 'OK';
    let closest: DescriptorStatus | undefined;
    for (let i = 0; i < statuses.length; i++) {
      const s = statuses[i]!;
      if (s.code === 'OVER_LIMIT') overall = 'OVER_LIMIT';
      if (s.rule === undefined || s.rule.unlimited) continue;
      if (closest === undefined || (s.code === 'OVER_LIMIT' && closest.code === 'OK') || (s.code === closest.code && s.remaining < closest.remaining)) closest = s;
    }
    if (reuse !== undefined) {
      const rule = closest?.rule;
      if (closest === undefined || rule === undefined) return reuse.response.set(overall, statuses, undefined);
      const h = reuse.headerSource;
      h.policyName = rule.name;
      h.quota = rule.requestsPerUnit;
      h.windowMs = rule.windowMs;
      h.remaining = closest.remaining;
      h.resetMs = closest.resetMs;
      h.retryAfterMs = closest.retryAfterMs;
      h.overLimit = closest.code === 'OVER_LIMIT';
      return reuse.response.set(overall, statuses, h);
    }
    const source: HeaderSource | undefined =
      closest?.rule === undefined
        ? undefined
        : {
            policyName: closest.rule.name,
            quota: closest.rule.requestsPerUnit,
            windowMs: closest.rule.windowMs,
            remaining: closest.remaining,
            resetMs: closest.resetMs,
            retryAfterMs: closest.retryAfterMs,
            overLimit: closest.code === 'OVER_LIMIT',
          };
    return new Response(overall, statuses, source);
  }
}
