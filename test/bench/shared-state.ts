// Shared-state benchmark: decision latency (strict, local), local decisions/s, backend calls per request and the overshoot of one global limit across 3 processes; numbers for the report, never assertions.
import { pathToFileURL } from 'node:url';
import { rateLimitDomainSchema } from '../../runtime/config/config-schema.js';
import { createLogger, setLogLevel } from '../../runtime/log.js';
import { createSharedState, type SharedState } from '../../runtime/shared-state/shared-state.js';
import { MetricsRegistry } from '../../runtime/telemetry/metrics-registry.js';
import { maxInSpan, perWindow, runLimitWorker, type LimitReport } from '../direct/shared-state-worker.js';
import { startRedis } from '../helpers/redis-server.js';

const percentile = (sorted: readonly number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? NaN;
const round = (n: number, digits = 4): number => Number(n.toFixed(digits));

function limiterState(redisUrl: string): SharedState {
  return createSharedState(
    { backend: 'redis', redis: { url: redisUrl, mode: 'single', timeoutMs: 50, failMode: 'open', keyPrefix: 'bench' } },
    {
      metrics: new MetricsRegistry(),
      nodeName: 'bench',
      logger: createLogger('bench'),
      rateLimits: [
        rateLimitDomainSchema.parse({
          domain: 'bench',
          descriptors: [
            { entries: [{ key: 'strict' }], requestsPerUnit: 1_000_000_000, unit: 'second', algorithm: 'gcra' },
            { entries: [{ key: 'local' }], requestsPerUnit: 1_000_000_000, unit: 'second', algorithm: 'gcra', mode: 'local' },
          ],
        }),
      ],
    },
  );
}

/** ms per awaited decision, `inflight` concurrent callers; the baseline awaits an already-resolved promise the same way. */
async function latency(decide: () => unknown, total: number, inflight: number): Promise<number[]> {
  const samples: number[] = [];
  let left = total;
  const worker = async (): Promise<void> => {
    while (left-- > 0) {
      const t0 = performance.now();
      await decide();
      samples.push(performance.now() - t0);
    }
  };
  await Promise.all(Array.from({ length: inflight }, () => worker()));
  return samples.sort((a, b) => a - b);
}

async function singleNode(redisUrl: string, out: Record<string, number>): Promise<void> {
  const state = limiterState(redisUrl);
  await state.ready();
  const strict = { domain: 'bench', descriptors: [{ entries: [{ key: 'strict', value: 'k' }] }] };
  const local = { domain: 'bench', descriptors: [{ entries: [{ key: 'local', value: 'k' }] }] };
  const decideStrict = (): unknown => state.rateLimiter.decide(strict);
  const decideLocal = (): unknown => state.rateLimiter.decide(local);
  await latency(decideStrict, 2_000, 1);
  await latency(decideLocal, 20_000, 1);

  const base = await latency(() => Promise.resolve(), 20_000, 1);
  const s1 = await latency(decideStrict, 20_000, 1);
  const s16 = await latency(decideStrict, 40_000, 16);
  out.baseline_p50_ms = round(percentile(base, 0.5));
  out.strict_added_p50_ms = round(percentile(s1, 0.5) - percentile(base, 0.5));
  out.strict_added_p99_ms = round(percentile(s1, 0.99) - percentile(base, 0.99));
  out.strict_16_inflight_p50_ms = round(percentile(s16, 0.5));
  out.strict_16_inflight_p99_ms = round(percentile(s16, 0.99));

  // Local decisions are synchronous once a lease is held: time each call itself, without an await around it.
  const localSamples: number[] = [];
  for (let i = 0; i < 200_000; i++) {
    const t0 = process.hrtime.bigint();
    const r = decideLocal();
    const dt = Number(process.hrtime.bigint() - t0) / 1e6;
    if (r instanceof Promise) await r;
    localSamples.push(dt);
  }
  localSamples.sort((a, b) => a - b);
  out.local_p50_ms = round(percentile(localSamples, 0.5), 5);
  out.local_p99_ms = round(percentile(localSamples, 0.99), 5);

  let decisions = 0;
  const until = performance.now() + 1_000;
  while (performance.now() < until) {
    for (let i = 0; i < 1_000; i++) {
      const r = decideLocal();
      if (r instanceof Promise) await r;
    }
    decisions += 1_000;
  }
  out.local_decisions_per_s = decisions;
  await state.close();
}

async function threeNodes(redisUrl: string, seconds: number, out: Record<string, number>): Promise<void> {
  const limit = 1000;
  const burst = 100;
  const startAt = Date.now() + 3_000;
  const reports: LimitReport[] = await Promise.all(
    [0, 1, 2].map((i) => runLimitWorker({ task: 'limit', node: `bench-${i}`, redisUrl, startAt, durationMs: seconds * 1000, rate: limit, limit, gcraBurst: burst })),
  );
  const all = (name: string): number[] => reports.flatMap((r) => r.admittedAt[name]!).sort((a, b) => a - b);
  const first = Math.floor(startAt / 1000) + 1;
  const last = Math.floor((startAt + seconds * 1000) / 1000) - 1;
  const fixedOvershoot = (name: string): number => {
    const full = [...perWindow(all(name)).entries()].filter(([w]) => w >= first && w <= last).map(([, n]) => n);
    return round(((Math.max(...full) - limit) / limit) * 100, 2);
  };
  const gcraOvershoot = (name: string): number => round(((maxInSpan(all(name), 1000) - (burst + limit)) / (burst + limit)) * 100, 2);
  out.overshoot_strict_fixed_pct = fixedOvershoot('fixed-strict');
  out.overshoot_local_fixed_pct = fixedOvershoot('fixed-local');
  out.overshoot_strict_gcra_pct = gcraOvershoot('gcra-strict');
  out.overshoot_local_gcra_pct = gcraOvershoot('gcra-local');
  const offeredLocal = reports.reduce((n, r) => n + r.offered['fixed-local']! + r.offered['gcra-local']!, 0);
  out.local_redis_calls_per_request = round(reports.reduce((n, r) => n + r.backendCalls.local, 0) / offeredLocal);
  out.accuracy_run_seconds = seconds;
}

export async function benchSharedState(options: { accuracySeconds?: number } = {}): Promise<Record<string, number>> {
  setLogLevel('error');
  const redis = await startRedis();
  const out: Record<string, number> = {};
  try {
    await singleNode(redis.url, out);
    await threeNodes(redis.url, options.accuracySeconds ?? 10, out);
  } finally {
    await redis.stop();
  }
  return out;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  benchSharedState().then(
    (r) => process.stdout.write(JSON.stringify(r, null, 2) + '\n'),
    (err: unknown) => {
      process.stderr.write(`${String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
