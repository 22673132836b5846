// Accuracy of one global limit (1000/s) shared by three weft-like processes through one Redis, offered 3× the limit: strict exact, local within its documented bound.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_LEASE_FRACTION } from '../../runtime/shared-state/lease-pool.js';
import { startRedis, type RedisProcess } from '../helpers/redis-server.js';
import { hasCommand, requireCommands } from '../helpers/requirements.js';
import { maxInSpan, perWindow, runLimitWorker, type LimitReport, type LimitTask } from './shared-state-worker.js';

/** Load duration: 10 s as the issue asks (≈13 s of test time); WEFT_ACCURACY_SECONDS shortens it for quick local runs. */
const SECONDS = Number(process.env.WEFT_ACCURACY_SECONDS ?? '10');
const LIMIT = 1000;
const GCRA_BURST = 100;
const NODES = 3;
const LEASE = Math.ceil(LIMIT * DEFAULT_LEASE_FRACTION);

describe('global limit across 3 processes sharing one Redis', () => {
  let redis: RedisProcess;
  let reports: LimitReport[];
  const all = (name: string): number[] => reports.flatMap((r) => r.admittedAt[name]!).sort((a, b) => a - b);

  beforeAll(async () => {
    if (!hasCommand('redis-server')) return; // each test skips itself with the reason
    redis = await startRedis();
    const startAt = Date.now() + 3_000;
    const task = (node: string): LimitTask => ({ task: 'limit', node, redisUrl: redis.url, startAt, durationMs: SECONDS * 1000, rate: LIMIT, limit: LIMIT, gcraBurst: GCRA_BURST });
    reports = await Promise.all(Array.from({ length: NODES }, (_, i) => runLimitWorker(task(`node-${i}`))));
  }, 60_000 + SECONDS * 1000);
  afterAll(async () => {
    await redis?.stop();
  });

  it('was offered 3× the limit', (ctx) => {
    requireCommands(ctx, 'redis-server', 'redis-cli');
    const offered = reports.reduce((n, r) => n + r.offered['fixed-strict']!, 0);
    expect(offered).toBeGreaterThanOrEqual(NODES * LIMIT * SECONDS * 0.95);
  });

  it('strict fixed window admits exactly the limit in every window where Redis refused anyone', () => {
    const admitted = perWindow(all('fixed-strict'));
    const refused = perWindow(reports.flatMap((r) => r.backendDeniedAt['fixed-strict']!));
    expect(Math.max(...admitted.values())).toBeLessThanOrEqual(LIMIT);
    // Exactness that does not depend on how much load a busy CI machine manages to offer: a window in which Redis
    // refused a request must have admitted exactly the limit (a refusal means the limit was reached).
    const refusedWindows = [...refused.keys()];
    expect(refusedWindows.length).toBeGreaterThanOrEqual(SECONDS - 2);
    for (const w of refusedWindows) expect(admitted.get(w)).toBe(LIMIT);
  });

  it('strict GCRA stays within burst + rate·Δ for every interval', () => {
    const times = all('gcra-strict');
    for (const span of [100, 1000]) expect(maxInSpan(times, span)).toBeLessThanOrEqual(GCRA_BURST + (span / 1000) * LIMIT + 1);
    const elapsed = (times.at(-1) - times[0]!) / 1000;
    expect(times.length).toBeLessThanOrEqual(GCRA_BURST + elapsed * LIMIT + 1);
    // Sanity floor only: how close to the bound it gets depends on the load the machine manages to offer.
    expect(times.length).toBeGreaterThanOrEqual(elapsed * LIMIT * 0.5);
  });

  it('local fixed window never exceeds the limit per window', () => {
    const windows = perWindow(all('fixed-local'));
    expect(Math.max(...windows.values())).toBeLessThanOrEqual(LIMIT);
    expect(all('fixed-local').length).toBeGreaterThanOrEqual(LIMIT * SECONDS * 0.5);
  });

  it('local GCRA stays within its documented bound: burst + rate·Δ + 1.5·nodes·lease', () => {
    const times = all('gcra-local');
    // A node holds at most one lease plus the half it kept when it prefetched the next one.
    expect(maxInSpan(times, 1000)).toBeLessThanOrEqual(GCRA_BURST + LIMIT + 1.5 * NODES * LEASE + 1);
  });

  it('local mode costs at most 0.05 backend calls per request', (ctx) => {
    requireCommands(ctx, 'redis-server', 'redis-cli');
    const offered = reports.reduce((n, r) => n + r.offered['fixed-local']! + r.offered['gcra-local']!, 0);
    const calls = reports.reduce((n, r) => n + r.backendCalls.local, 0);
    process.stdout.write(`calls by counter: ${JSON.stringify(reports.map((r) => r.callsById))}\n`);
    process.stdout.write(
      `accuracy over ${SECONDS}s: ` +
        JSON.stringify({
          fixedStrictMaxWindow: Math.max(...perWindow(all('fixed-strict')).values()),
          gcraStrictMax1s: maxInSpan(all('gcra-strict'), 1000),
          fixedLocalMaxWindow: Math.max(...perWindow(all('fixed-local')).values()),
          gcraLocalMax1s: maxInSpan(all('gcra-local'), 1000),
          localCallsPerRequest: calls / offered,
          strictCallsPerRequest: reports.reduce((n, r) => n + r.backendCalls.strict, 0) / (2 * reports.reduce((n, r) => n + r.offered['fixed-strict']!, 0)),
        }) +
        '\n',
    );
    expect(calls / offered).toBeLessThanOrEqual(0.05);
  });
});
