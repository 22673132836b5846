// Contract suite for StateBackend: the same decisions and breaker semantics from the memory backend and from Redis (single, cluster, sentinel).
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger, setLogLevel } from '../../runtime/log.js';
import { MemoryBackend, MemoryStore } from '../../runtime/shared-state/state-memory.js';
import { RedisBackend } from '../../runtime/shared-state/state-redis.js';
import { MessageChannel } from 'node:worker_threads';
import { SharedCounterTable } from '../../runtime/shared-state/shared-counter-table.js';
import { BREAKER_CHANGE_NOTE, BREAKER_RPC, ProcessMemoryBackend, serveBreakers } from '../../runtime/workers/process-memory-backend.js';
import { WorkerRpc } from '../../runtime/workers/worker-rpc.js';
import type { BreakerRecord, BreakerThresholds, LimitSpec, StateBackend } from '../../runtime/shared-state/state-backend.js';
import type { RedisConfig } from '../../runtime/config/config-schema.js';
import { startRedis, startRedisCluster, startRedisSentinel } from '../helpers/redis-server.js';
import { hasCommand, requireCommands } from '../helpers/requirements.js';

interface Harness {
  /** Two handles on the same shared state, as two nodes would have. */
  nodes: [StateBackend, StateBackend];
  stop(): Promise<void>;
}

setLogLevel('warn');
const logger = createLogger('shared-state-test');
const id = (): string => `t-${randomUUID()}`;
const fixed = (limit: number, windowMs = 3_600_000): LimitSpec => ({ id: id(), algorithm: 'fixed', limit, windowMs, burst: limit });
const gcra = (limit: number, burst: number, windowMs = 1_000): LimitSpec => ({ id: id(), algorithm: 'gcra', limit, windowMs, burst });
const thresholds = (overrides: Partial<BreakerThresholds> = {}): BreakerThresholds => ({
  windowMs: 10_000,
  minimumCalls: 4,
  failureRateThreshold: 50,
  minReportingNodes: 1,
  openMs: 300,
  ...overrides,
});

async function redisHarness(config: RedisConfig, stop: () => Promise<void>): Promise<Harness> {
  const a = new RedisBackend(config, { logger });
  const b = new RedisBackend(config, { logger });
  await Promise.all([a.ready(), b.ready()]);
  return {
    nodes: [a, b],
    stop: async () => {
      await Promise.all([a.close(), b.close()]);
      await stop();
    },
  };
}

const harnesses: Record<string, () => Promise<Harness>> = {
  memory: () => {
    const store = new MemoryStore();
    return Promise.resolve({ nodes: [new MemoryBackend(store), new MemoryBackend(store)], stop: () => Promise.resolve() });
  },
  // Two worker threads of one process: limits on the shared counter table, breakers answered by the primary over messages.
  'memory, worker threads of one process': () => {
    const table = new SharedCounterTable(1024);
    const primaryBackend = new MemoryBackend();
    const channels = [new MessageChannel(), new MessageChannel()];
    const toPrimary = channels.map((c) => new WorkerRpc(c.port1));
    const service = serveBreakers(primaryBackend, (record) => toPrimary.forEach((rpc) => rpc.note(BREAKER_CHANGE_NOTE, record)));
    for (const rpc of toPrimary) rpc.handle(BREAKER_RPC, service.answer);
    const workers = channels.map((c) => new ProcessMemoryBackend(table, new WorkerRpc(c.port2)));
    return Promise.resolve({
      nodes: [workers[0]!, workers[1]!],
      stop: () => {
        service.stop();
        for (const c of channels) c.port1.close();
        return Promise.resolve();
      },
    });
  },
  'redis single': async () => {
    const r = await startRedis();
    return redisHarness({ url: r.url, mode: 'single', timeoutMs: 200, failMode: 'open', keyPrefix: 'wt' }, () => r.stop());
  },
  'redis cluster (3 masters)': async () => {
    const c = await startRedisCluster(3);
    return redisHarness({ urls: c.urls, mode: 'cluster', timeoutMs: 500, failMode: 'open', keyPrefix: 'wt' }, () => c.stop());
  },
  'redis sentinel': async () => {
    const s = await startRedisSentinel();
    return redisHarness(
      { urls: s.sentinels.map((x) => x.url), mode: 'sentinel', sentinelName: s.masterName, timeoutMs: 500, failMode: 'open', keyPrefix: 'wt' },
      () => s.stop(),
    );
  },
};

function waitForEvent(backend: StateBackend, predicate: (r: BreakerRecord) => boolean, timeoutMs = 3_000): Promise<BreakerRecord> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error('no matching breaker event'));
    }, timeoutMs);
    const off = backend.onBreakerChange((r) => {
      if (!predicate(r)) return;
      clearTimeout(timer);
      off();
      resolve(r);
    });
  });
}

for (const [name, create] of Object.entries(harnesses)) {
  describe(`StateBackend contract: ${name}`, () => {
    let h: Harness;
    const needsRedis = name !== 'memory';
    beforeAll(async () => {
      if (needsRedis && !hasCommand('redis-server')) return; // each test skips itself with the reason
      h = await create();
    });
    afterAll(async () => {
      await h?.stop();
    });

    it('fixed window admits exactly the limit across nodes and does not count denials', async (ctx) => {
      if (needsRedis) requireCommands(ctx, 'redis-server', 'redis-cli');
      const spec = fixed(5);
      const results = [];
      for (let i = 0; i < 8; i++) results.push(await h.nodes[i % 2]!.consume(spec, 1));
      expect(results.map((r) => r.allowed)).toEqual([true, true, true, true, true, false, false, false]);
      expect(results.map((r) => r.remaining).slice(0, 5)).toEqual([4, 3, 2, 1, 0]);
      expect(results[5]!.retryAfterMs).toBeGreaterThan(0);
      expect(results[5]!.resetMs).toBeLessThanOrEqual(3_600_000);
      // A check (0 hits) neither counts nor is refused.
      expect((await h.nodes[0].consume(spec, 0)).allowed).toBe(true);
      const other = await h.nodes[1].consume({ ...spec, id: id() }, 1);
      expect(other.remaining).toBe(4);
    });

    it('strict consumption is all or nothing; lease consumption grants what is left', async (ctx) => {
      if (needsRedis) requireCommands(ctx, 'redis-server', 'redis-cli');
      const spec = fixed(10);
      expect((await h.nodes[0].consume(spec, 7)).granted).toBe(7);
      const strict = await h.nodes[1].consume(spec, 4);
      expect(strict).toMatchObject({ allowed: false, granted: 0, remaining: 3 });
      const lease = await h.nodes[1].consume(spec, 4, { atMost: true });
      expect(lease).toMatchObject({ allowed: true, granted: 3, remaining: 0 });
      expect((await h.nodes[0].consume(spec, 4, { atMost: true })).granted).toBe(0);
    });

    it('GCRA admits the burst, then one request per emission interval', async (ctx) => {
      if (needsRedis) requireCommands(ctx, 'redis-server', 'redis-cli');
      const spec = gcra(5, 3);
      const first = [];
      for (let i = 0; i < 4; i++) first.push(await h.nodes[0].consume(spec, 1));
      expect(first.map((r) => r.allowed)).toEqual([true, true, true, false]);
      const retry = first[3]!.retryAfterMs;
      expect(retry).toBeGreaterThan(100);
      expect(retry).toBeLessThanOrEqual(200);
      const slept = performance.now();
      await new Promise((r) => setTimeout(r, retry + 5));
      expect((await h.nodes[1].consume(spec, 1)).allowed).toBe(true);
      const next = await h.nodes[1].consume(spec, 1);
      // Only a timer that fired a whole emission interval (200 ms) late could have let a second one through.
      expect(next.allowed === false || performance.now() - slept >= retry + 200).toBe(true);
    });

    it('GCRA leases grant at most what the bucket holds', async (ctx) => {
      if (needsRedis) requireCommands(ctx, 'redis-server', 'redis-cli');
      const spec = gcra(100, 20);
      expect((await h.nodes[0].consume(spec, 15, { atMost: true })).granted).toBe(15);
      const second = await h.nodes[1].consume(spec, 15, { atMost: true });
      expect(second.granted).toBeGreaterThanOrEqual(5);
      expect(second.granted).toBeLessThanOrEqual(6);
    });

    it('breaker opens from the aggregate of all nodes and announces it', async (ctx) => {
      if (needsRedis) requireCommands(ctx, 'redis-server', 'redis-cli');
      const breaker = id();
      const seen = waitForEvent(h.nodes[1], (r) => r.name === breaker && r.state === 'OPEN');
      await new Promise((r) => setTimeout(r, 100));
      const t = thresholds();
      const a = await h.nodes[0].breakerFlush(breaker, 'node-a', 1, 1, t);
      expect(a.record.state).toBe('CLOSED');
      const b = await h.nodes[1].breakerFlush(breaker, 'node-b', 0, 2, t);
      expect(b).toMatchObject({ calls: 4, failures: 3, reportingNodes: 2 });
      expect(b.record.state).toBe('OPEN');
      expect(b.record.openRemainingMs).toBeGreaterThan(200);
      const event = await seen;
      expect(event.generation).toBe(b.record.generation);
      const [got] = await h.nodes[0].breakerGet([breaker]);
      expect(got).toMatchObject({ state: 'OPEN', generation: b.record.generation });
    });

    it('one node alone cannot open a breaker that needs two reporting nodes', async (ctx) => {
      if (needsRedis) requireCommands(ctx, 'redis-server', 'redis-cli');
      const breaker = id();
      const t = thresholds({ minReportingNodes: 2 });
      const a = await h.nodes[0].breakerFlush(breaker, 'node-a', 0, 50, t);
      expect(a.record.state).toBe('CLOSED');
      expect(a.reportingNodes).toBe(1);
      const b = await h.nodes[1].breakerFlush(breaker, 'node-b', 0, 1, t);
      expect(b.record.state).toBe('OPEN');
    });

    it('HALF_OPEN has one probe slot across nodes; probe outcomes close or re-open', async (ctx) => {
      if (needsRedis) requireCommands(ctx, 'redis-server', 'redis-cli');
      const breaker = id();
      const t = thresholds({ openMs: 150 });
      await h.nodes[0].breakerFlush(breaker, 'node-a', 0, 4, t);
      expect((await h.nodes[0].breakerAcquireProbe(breaker, 'a', 1_000)).acquired).toBe(false);
      await new Promise((r) => setTimeout(r, 200));
      const probes = await Promise.all([h.nodes[0].breakerAcquireProbe(breaker, 'a', 1_000), h.nodes[1].breakerAcquireProbe(breaker, 'b', 1_000)]);
      expect(probes.filter((p) => p.acquired)).toHaveLength(1);
      expect(probes[0].record.state).toBe('HALF_OPEN');
      const winner = probes[0].acquired ? 'a' : 'b';
      const reopened = await h.nodes[0].breakerProbeResult(breaker, winner, false, 1, 150);
      expect(reopened.state).toBe('OPEN');
      await new Promise((r) => setTimeout(r, 200));
      const again = await h.nodes[1].breakerAcquireProbe(breaker, 'b', 1_000);
      expect(again.acquired).toBe(true);
      const closed = await h.nodes[1].breakerProbeResult(breaker, 'b', true, 1, 150);
      expect(closed.state).toBe('CLOSED');
      expect(closed.generation).toBeGreaterThan(reopened.generation);
    });
  });
}
