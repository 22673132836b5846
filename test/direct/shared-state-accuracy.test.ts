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
  let startAt: number;
  const all = (name: string): number[] => reports.flatMap((r) => r.admittedAt[name]!).sort((a, b) => a - b);
  /** Windows entirely inside the run: the first and last are partial. */
  const fullWindows = (m: Map<number, number>): number[] => {
    const first = Math.floor(startAt / 1000) + 1;
    const last = Math.floor((startAt + SECONDS * 1000) / 1000) - 1;
    return [...m.entries()].filter(([w]) => w >= first && w <= last).map(([, n]) => n);
  };

  beforeAll(async () => {
    if (!hasCommand('redis-server')) return; // each test skips itself with the reason
    redis = await startRedis();
    startAt = Date.now() + 3_000;
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

  it('strict fixed window admits exactly the limit in every window', (ctx) => {
    requireCommands(ctx, 'redis-server', 'redis-cli');
    const windows = perWindow(all('fixed-strict'));
    expect(Math.max(...windows.values())).toBeLessThanOrEqual(LIMIT);
    const full = fullWindows(windows);
    expect(full.length).toBeGreaterThanOrEqual(SECONDS - 2);
    expect(full.every((n) => n === LIMIT)).toBe(true);
  });

  it('strict GCRA stays within burst + rate·Δ for every interval', (ctx) => {
    requireCommands(ctx, 'redis-server', 'redis-cli');
    const times = all('gcra-strict');
    for (const span of [100, 1000]) expect(maxInSpan(times, span)).toBeLessThanOrEqual(GCRA_BURST + (span / 1000) * LIMIT + 1);
    const elapsed = (times.at(-1) - times[0]!) / 1000;
    expect(times.length).toBeLessThanOrEqual(GCRA_BURST + elapsed * LIMIT + 1);
    expect(times.length).toBeGreaterThanOrEqual(elapsed * LIMIT * 0.95);
  });

  it('local fixed window never exceeds the limit per window and wastes little', (ctx) => {
    requireCommands(ctx, 'redis-server', 'redis-cli');
    const windows = perWindow(all('fixed-local'));
    expect(Math.max(...windows.values())).toBeLessThanOrEqual(LIMIT);
    for (const n of fullWindows(windows)) expect(n).toBeGreaterThanOrEqual(LIMIT * 0.95);
  });

  it('local GCRA stays within its documented bound: burst + rate·Δ + 1.5·nodes·lease', (ctx) => {
    requireCommands(ctx, 'redis-server', 'redis-cli');
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
