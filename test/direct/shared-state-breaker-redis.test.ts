// Shared breakers on real Redis, two nodes in one process: lost pub/sub caught up by polling, and local breaking while Redis is down.
import { afterEach, describe, expect, it } from 'vitest';
import { circuitBreakersSchema } from '../../runtime/config/config-schema.js';
import { createLogger, setLogLevel } from '../../runtime/log.js';
import { SharedBreakers } from '../../runtime/shared-state/circuit-breaker.js';
import { RedisBackend } from '../../runtime/shared-state/state-redis.js';
import type { BreakerListener } from '../../runtime/shared-state/state-backend.js';
import { MetricsRegistry } from '../../runtime/telemetry/metrics-registry.js';
import { startRedis } from '../helpers/redis-server.js';
import { requireCommands } from '../helpers/requirements.js';

setLogLevel('error');
const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

/** A node whose pub/sub never delivers: what a subscriber that was disconnected at the wrong moment sees. */
class DeafBackend extends RedisBackend {
  override onBreakerChange(_listener: BreakerListener): () => void {
    return () => undefined;
  }
}

const config = circuitBreakersSchema.parse({
  defaults: { minimumCalls: 5, failureRateThreshold: 50, windowMs: 5_000, openMs: 60_000, flushIntervalMs: 20, pollIntervalMs: 200 },
});

async function node(url: string, name: string, deaf = false): Promise<{ breakers: SharedBreakers; backend: RedisBackend; metrics: MetricsRegistry }> {
  const redisConfig = { url, mode: 'single' as const, timeoutMs: 50, failMode: 'open' as const, keyPrefix: 'cb' };
  const logger = createLogger('breaker-test');
  const backend = deaf ? new DeafBackend(redisConfig, { logger }) : new RedisBackend(redisConfig, { logger });
  await backend.ready();
  const metrics = new MetricsRegistry();
  const breakers = new SharedBreakers(backend, { nodeName: name, config, metrics, logger });
  cleanup.push(async () => {
    await breakers.close();
    await backend.close();
  });
  return { breakers, backend, metrics };
}

const until = async (check: () => boolean, timeoutMs: number): Promise<number> => {
  const start = performance.now();
  while (!check()) {
    if (performance.now() - start > timeoutMs) throw new Error('condition not reached');
    await new Promise((r) => setTimeout(r, 5));
  }
  return performance.now() - start;
};

describe('shared breakers on Redis', () => {
  it('a node that misses the pub/sub message still converges through polling', async (ctx) => {
    requireCommands(ctx, 'redis-server', 'redis-cli');
    const redis = await startRedis();
    cleanup.push(() => redis.stop());
    const a = await node(redis.url, 'a');
    const b = await node(redis.url, 'b', true);
    b.breakers.state('up');
    for (let i = 0; i < 5; i++) {
      const p = await a.breakers.acquire('up');
      a.breakers.record(p, false);
    }
    await until(() => a.breakers.state('up') === 'OPEN', 1_000);
    const waited = await until(() => b.breakers.state('up') === 'OPEN', 1_000);
    // One poll interval, plus slack for a busy machine; pub/sub alone would never deliver it.
    expect(waited).toBeLessThanOrEqual(config.defaults.pollIntervalMs + 500);
    expect((await b.breakers.acquire('up')).allowed).toBe(false);
  });

  it('with Redis down a node breaks locally, and takes the shared state again when Redis is back', async (ctx) => {
    requireCommands(ctx, 'redis-server', 'redis-cli');
    const redis = await startRedis();
    cleanup.push(() => redis.stop());
    const a = await node(redis.url, 'a');
    const b = await node(redis.url, 'b');
    a.breakers.state('up');
    b.breakers.state('up');
    await redis.kill();
    const t0 = performance.now();
    for (let i = 0; i < 5; i++) {
      const p = await a.breakers.acquire('up');
      a.breakers.record(p, false);
    }
    expect(performance.now() - t0).toBeLessThan(50);
    // The failed flush (bounded by timeoutMs 50) hands the decision to the node's own window.
    await until(() => a.breakers.state('up') === 'OPEN', 200);
    expect(b.breakers.state('up')).toBe('CLOSED');
    expect(await a.metrics.render()).toMatch(/weft_breaker_degraded_total\{name="up",op="open"\} 1/);
    await redis.restart();
    // Redis restarted empty (no persistence): the shared record says CLOSED, and the poll makes node a follow it.
    await until(() => a.breakers.state('up') === 'CLOSED', 3_000);
    expect((await a.breakers.acquire('up')).allowed).toBe(true);
  });
});
