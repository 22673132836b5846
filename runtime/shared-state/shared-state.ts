/** Builds the shared-state layer from weft.yaml's `state`, `rateLimits` and `circuitBreakers`: one backend, the rate limiter and the breakers on it. */
import type { CircuitBreakersConfig, RateLimitDomainConfig, WeftConfig } from '../config/config-schema.js';
import type { Logger } from '../log.js';
import type { MetricsRegistry } from '../telemetry/metrics-registry.js';
import { SharedBreakers } from './circuit-breaker.js';
import { RateLimiter } from './rate-limiter.js';
import type { StateBackend } from './state-backend.js';
import { MemoryBackend, type MemoryStore } from './state-memory.js';
import { RedisBackend } from './state-redis.js';

/** Budget of a memory decision: it never waits, this only bounds lease bookkeeping. */
const MEMORY_TIMEOUT_MS = 50;

export interface SharedStateOptions {
  metrics: MetricsRegistry;
  nodeName: string;
  logger: Logger;
  rateLimits?: readonly RateLimitDomainConfig[];
  circuitBreakers?: CircuitBreakersConfig;
  /** Memory backend only: share one store between in-process nodes (tests, the quickstart). */
  memoryStore?: MemoryStore;
  /** Memory backend only: the backend to use instead (a worker thread's view of its process's state, runtime/workers). */
  memoryBackend?: MemoryBackend;
  /** Lease size of local-mode limits as a fraction of the limit (default 0.02). */
  leaseFraction?: number;
}

export interface SharedState {
  readonly backend: StateBackend;
  readonly rateLimiter: RateLimiter;
  readonly breakers: SharedBreakers;
  /** Resolves when the backend can answer (redis: the command connection is ready); serve after it. */
  ready(timeoutMs?: number): Promise<void>;
  /** New rules and breaker tuning from a config reload; counters and breaker states carry over. */
  update(rateLimits: readonly RateLimitDomainConfig[], circuitBreakers: CircuitBreakersConfig): void;
  close(): Promise<void>;
}

export function createSharedState(config: WeftConfig['state'], opts: SharedStateOptions): SharedState {
  const backend: StateBackend =
    config.backend === 'redis' ? new RedisBackend(config.redis, { logger: opts.logger, metrics: opts.metrics }) : (opts.memoryBackend ?? new MemoryBackend(opts.memoryStore));
  const failMode = config.backend === 'redis' ? config.redis.failMode : 'open';
  const timeoutMs = config.backend === 'redis' ? config.redis.timeoutMs : MEMORY_TIMEOUT_MS;
  const rateLimiter = new RateLimiter(backend, {
    domains: opts.rateLimits ?? [],
    defaultFailMode: failMode,
    timeoutMs,
    metrics: opts.metrics,
    logger: opts.logger,
    ...(opts.leaseFraction === undefined ? {} : { leaseFraction: opts.leaseFraction }),
  });
  const breakers = new SharedBreakers(backend, {
    nodeName: opts.nodeName,
    metrics: opts.metrics,
    logger: opts.logger,
    ...(opts.circuitBreakers === undefined ? {} : { config: opts.circuitBreakers }),
  });
  return {
    backend,
    rateLimiter,
    breakers,
    ready: (t) => (backend instanceof RedisBackend ? backend.ready(t) : Promise.resolve()),
    update: (rateLimits, circuitBreakers) => {
      rateLimiter.update(rateLimits);
      breakers.update(circuitBreakers);
    },
    close: async () => {
      await breakers.close();
      await backend.close();
    },
  };
}
