/** The Redis backend: one Lua script per decision on Redis's clock, every key of a decision under one hash tag, failures classified and counted, never waited on past the command timeout. */
import { createHash } from 'node:crypto';
import { WeftError } from '../errors.js';
import type { RedisConfig } from '../config/config-schema.js';
import type { Logger } from '../log.js';
import type { MetricsRegistry } from '../telemetry/metrics-registry.js';
import { BREAKER_FLUSH_LUA, BREAKER_GET_LUA, BREAKER_PROBE_LUA, BREAKER_PROBE_RESULT_LUA, parseBreakerMessage } from './breaker-lua.js';
import { FIXED_WINDOW_LUA } from './fixed-window.js';
import { GCRA_LUA, gcraParams } from './gcra.js';
import { createRedisClient, RedisHealthGate, type RedisClient } from './redis-connection.js';
import {
  BREAKER_STATES,
  escapeIdPart,
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
} from './state-backend.js';

interface Script {
  readonly lua: string;
  readonly sha: string;
}

const script = (lua: string): Script => ({ lua, sha: createHash('sha1').update(lua).digest('hex') });
const SCRIPTS = {
  gcra: script(GCRA_LUA),
  fixed: script(FIXED_WINDOW_LUA),
  breakerFlush: script(BREAKER_FLUSH_LUA),
  breakerGet: script(BREAKER_GET_LUA),
  breakerProbe: script(BREAKER_PROBE_LUA),
  breakerProbeResult: script(BREAKER_PROBE_RESULT_LUA),
} as const;

export const REDIS_FAILURE_REASONS = ['unavailable', 'timeout', 'reply', 'connection', 'expired'] as const;
export type RedisFailureReason = (typeof REDIS_FAILURE_REASONS)[number];

/** A failed backend call, with why; callers apply failMode and count it. */
export class StateBackendError extends WeftError {
  readonly reason: RedisFailureReason;
  constructor(reason: RedisFailureReason, message: string, cause?: unknown) {
    super('WEFT_ERR_STATE_BACKEND', message, { cause });
    this.reason = reason;
  }
}

const nowUs = (): number => (performance.timeOrigin + performance.now()) * 1000;

/**
 * Redis-clock offset learnt from the TIME every script returns; lets us stamp each decision with a deadline on
 * Redis's own clock. Error is about half the round trip of the best recent sample.
 */
class ClockOffset {
  #offsetUs: number | undefined;
  #rttUs = Infinity;
  #at = 0;

  sample(sentUs: number, receivedUs: number, redisUs: number): void {
    const rtt = receivedUs - sentUs;
    if (rtt <= this.#rttUs * 2 || receivedUs - this.#at > 5_000_000) {
      this.#offsetUs = redisUs - (sentUs + rtt / 2);
      this.#rttUs = rtt;
      this.#at = receivedUs;
    }
  }

  /** Redis-clock deadline `budgetMs` after `sentUs`, minus the estimate's error; 0 (none) until learnt. */
  deadline(sentUs: number, budgetMs: number): number {
    if (this.#offsetUs === undefined) return 0;
    const marginUs = Math.max(2_000, this.#rttUs);
    return Math.floor(sentUs + this.#offsetUs + budgetMs * 1000 - marginUs);
  }
}

function asInt(value: unknown): number {
  const n = typeof value === 'number' ? value : typeof value === 'string' ? Number(value) : NaN;
  if (!Number.isFinite(n)) throw new StateBackendError('reply', `unexpected reply element ${JSON.stringify(value)}`);
  return n;
}

function asState(value: unknown): BreakerState {
  const s = typeof value === 'string' ? value : Buffer.isBuffer(value) ? value.toString() : '';
  if (!(BREAKER_STATES as readonly string[]).includes(s)) throw new StateBackendError('reply', `unexpected breaker state ${JSON.stringify(s)}`);
  return s as BreakerState;
}

export interface RedisBackendOptions {
  logger: Logger;
  metrics?: MetricsRegistry;
}

export class RedisBackend implements StateBackend {
  readonly kind = 'redis' as const;
  readonly client: RedisClient;
  readonly #config: RedisConfig;
  readonly #logger: Logger;
  readonly #gate: RedisHealthGate;
  readonly #clock = new ClockOffset();
  readonly #listeners = new Set<BreakerListener>();
  readonly #channel: string;
  readonly #errors: { inc(labels: Record<string, string>): void }[];
  #subscriber: RedisClient | undefined;

  constructor(config: RedisConfig, options: RedisBackendOptions) {
    this.#config = config;
    this.#logger = options.logger;
    this.client = createRedisClient(config, 'command');
    this.client.on('error', (err: unknown) => this.#logger.debug({ err }, 'redis connection error'));
    this.#gate = new RedisHealthGate(this.client, this.#logger);
    this.#channel = `${config.keyPrefix}:cb:events`;
    const m = options.metrics;
    this.#errors =
      m === undefined
        ? []
        : [
            m.counter('weft_ratelimit_redis_errors_total', 'Rate-limit decisions Redis did not answer, by reason', ['reason']),
            m.counter('weft_breaker_redis_errors_total', 'Circuit-breaker Redis calls that failed, by operation and reason', ['op', 'reason']),
          ];
  }

  /** Resolves once the command connection is ready (or rejects after `timeoutMs`): callers start serving only then. */
  async ready(timeoutMs = 5_000): Promise<void> {
    if (this.client.status === 'ready') return;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.client.off('ready', onReady);
        reject(new StateBackendError('unavailable', `redis not ready within ${timeoutMs} ms (${this.#config.url ?? this.#config.urls?.join(',') ?? ''})`));
      }, timeoutMs);
      const onReady = (): void => {
        clearTimeout(timer);
        resolve();
      };
      this.client.once('ready', onReady);
    });
  }

  isHealthy(): boolean {
    return this.#gate.healthy();
  }

  #limitKey(spec: LimitSpec): string {
    return `${this.#config.keyPrefix}:rl:${spec.algorithm === 'gcra' ? 'g' : 'f'}:{${spec.id}}`;
  }

  #breakerKeys(name: string): string[] {
    const base = `${this.#config.keyPrefix}:cb:{${escapeIdPart(name)}}`;
    return [`${base}:s`, `${base}:w`, `${base}:n`, `${base}:p`];
  }

  #countError(family: 'ratelimit' | 'breaker', op: string, reason: RedisFailureReason): void {
    if (family === 'ratelimit') this.#errors[0]?.inc({ reason });
    else this.#errors[1]?.inc({ op, reason });
  }

  /** Runs one script within the timeout, classifying and counting failures. */
  async #run(family: 'ratelimit' | 'breaker', op: string, s: Script, keys: string[], args: (string | number)[]): Promise<unknown[]> {
    if (!this.#gate.healthy()) {
      this.#countError(family, op, 'unavailable');
      throw new StateBackendError('unavailable', `redis not available for ${op} (status ${this.client.status})`);
    }
    const started = performance.now();
    let timer: NodeJS.Timeout | undefined;
    try {
      // ioredis times each command; this bounds the whole call, NOSCRIPT fallback included.
      const expired = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new StateBackendError('timeout', `redis ${op} took longer than ${this.#config.timeoutMs} ms`)), this.#config.timeoutMs);
      });
      const reply = await Promise.race([this.#evalsha(op, s, keys, args), expired]);
      if (!Array.isArray(reply)) throw new StateBackendError('reply', `${op}: expected an array reply, got ${typeof reply}`);
      this.#gate.succeeded();
      return reply as unknown[];
    } catch (err) {
      const reason: RedisFailureReason =
        err instanceof StateBackendError
          ? err.reason
          : err instanceof Error && err.name === 'ReplyError'
            ? 'reply'
            : performance.now() - started >= this.#config.timeoutMs
              ? 'timeout'
              : 'connection';
      // A reply error means Redis answered: it is a data problem (wrong key type), not an outage.
      if (reason !== 'reply') this.#gate.failed();
      this.#countError(family, op, reason);
      if (err instanceof StateBackendError) throw err;
      throw new StateBackendError(reason, `redis ${op} failed: ${err instanceof Error ? err.message : String(err)}`, err);
    } finally {
      clearTimeout(timer);
    }
  }

  /** EVALSHA, falling back to EVAL when the script cache was flushed (restart, SCRIPT FLUSH, failover). */
  async #evalsha(op: string, s: Script, keys: string[], args: (string | number)[]): Promise<unknown> {
    try {
      return await this.client.evalsha(s.sha, keys.length, ...keys, ...args);
    } catch (err) {
      if (!(err instanceof Error && err.message.startsWith('NOSCRIPT'))) throw err;
      this.#logger.info({ op }, 'redis script cache empty, loading script');
      return this.client.eval(s.lua, keys.length, ...keys, ...args);
    }
  }

  async consume(spec: LimitSpec, hits: number, options: ConsumeOptions = {}): Promise<ConsumeResult> {
    const sent = nowUs();
    const deadline = this.#clock.deadline(sent, options.budgetMs ?? this.#config.timeoutMs);
    const minGrant = minGrantOf(hits, options);
    let args: (string | number)[];
    if (spec.algorithm === 'gcra') {
      const p = gcraParams(spec);
      args = [p.emissionUs, p.burstOffsetUs, hits, minGrant, deadline];
    } else args = [spec.windowMs * 1000, spec.limit, hits, minGrant, deadline];
    const reply = await this.#run('ratelimit', 'consume', spec.algorithm === 'gcra' ? SCRIPTS.gcra : SCRIPTS.fixed, [this.#limitKey(spec)], args);
    if (reply.length !== 6) throw new StateBackendError('reply', `consume: expected 6 elements, got ${reply.length}`);
    const [allowed, granted, remaining, resetUs, retryUs, redisNow] = reply.map(asInt) as [number, number, number, number, number, number];
    this.#clock.sample(sent, nowUs(), redisNow);
    if (allowed === -1) {
      this.#countError('ratelimit', 'consume', 'expired');
      throw new StateBackendError('expired', `decision for ${spec.id} reached redis after its ${options.budgetMs ?? this.#config.timeoutMs} ms budget; nothing counted`);
    }
    return { allowed: allowed === 1, granted, remaining, resetMs: resetUs / 1000, retryAfterMs: retryUs / 1000, decidedAtMs: redisNow / 1000 };
  }

  #breakerRecord(name: string, state: unknown, gen: unknown, remaining: unknown): BreakerRecord {
    return { name, state: asState(state), generation: asInt(gen), openRemainingMs: asInt(remaining) };
  }

  async breakerFlush(name: string, node: string, successes: number, failures: number, t: BreakerThresholds): Promise<BreakerFlushResult> {
    const r = await this.#run('breaker', 'flush', SCRIPTS.breakerFlush, this.#breakerKeys(name), [
      name,
      node,
      successes,
      failures,
      t.windowMs,
      t.minimumCalls,
      t.failureRateThreshold,
      t.minReportingNodes,
      t.openMs,
      this.#channel,
    ]);
    if (r.length !== 6) throw new StateBackendError('reply', `breaker flush: expected 6 elements, got ${r.length}`);
    return { record: this.#breakerRecord(name, r[0], r[1], r[2]), calls: asInt(r[3]), failures: asInt(r[4]), reportingNodes: asInt(r[5]) };
  }

  breakerGet(names: readonly string[]): Promise<BreakerRecord[]> {
    return Promise.all(
      names.map(async (name) => {
        const r = await this.#run('breaker', 'get', SCRIPTS.breakerGet, this.#breakerKeys(name), []);
        return this.#breakerRecord(name, r[0], r[1], r[2]);
      }),
    );
  }

  async breakerAcquireProbe(name: string, owner: string, ttlMs: number): Promise<BreakerProbeResult> {
    const r = await this.#run('breaker', 'probe', SCRIPTS.breakerProbe, this.#breakerKeys(name), [name, owner, ttlMs, this.#channel]);
    return { acquired: asInt(r[0]) === 1, record: this.#breakerRecord(name, r[1], r[2], r[3]) };
  }

  async breakerProbeResult(name: string, owner: string, success: boolean, requiredSuccesses: number, openMs: number): Promise<BreakerRecord> {
    const r = await this.#run('breaker', 'probe_result', SCRIPTS.breakerProbeResult, this.#breakerKeys(name), [
      name,
      owner,
      success ? 1 : 0,
      requiredSuccesses,
      openMs,
      this.#channel,
    ]);
    return this.#breakerRecord(name, r[0], r[1], r[2]);
  }

  onBreakerChange(listener: BreakerListener): () => void {
    this.#listeners.add(listener);
    if (this.#subscriber === undefined) this.#startSubscriber();
    return () => this.#listeners.delete(listener);
  }

  #startSubscriber(): void {
    const sub = createRedisClient(this.#config, 'subscriber');
    this.#subscriber = sub;
    sub.on('error', (err: unknown) => this.#logger.debug({ err }, 'redis subscriber error'));
    sub.on('message', (channel: string, message: string) => {
      if (channel !== this.#channel) return;
      const m = parseBreakerMessage(message);
      if (m === undefined || !(BREAKER_STATES as readonly string[]).includes(m.state)) {
        this.#logger.warn({ channel, message: message.slice(0, 200) }, 'ignoring malformed breaker event');
        return;
      }
      const record: BreakerRecord = { name: m.name, state: m.state as BreakerState, generation: m.generation, openRemainingMs: m.openRemainingMs };
      for (const l of this.#listeners) l(record);
    });
    sub.subscribe(this.#channel).catch((err: unknown) => this.#logger.warn({ err, channel: this.#channel }, 'breaker event subscription failed; polling only'));
  }

  async close(): Promise<void> {
    this.#gate.close();
    this.#listeners.clear();
    const clients = [this.client, ...(this.#subscriber === undefined ? [] : [this.#subscriber])];
    // QUIT only to a connected server, and not for long: a subscriber's QUIT would otherwise sit in its offline queue.
    await Promise.all(
      clients.map(async (c) => {
        if (c.status === 'ready') {
          let timer: NodeJS.Timeout | undefined;
          await Promise.race([c.quit(), new Promise((r) => (timer = setTimeout(r, Math.max(100, this.#config.timeoutMs))))])
            .catch(() => undefined)
            .finally(() => clearTimeout(timer));
        }
        c.disconnect();
      }),
    );
  }
}
