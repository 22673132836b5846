// A weft-like node for multi-process shared-state tests: `node --import tsx` runs it with WEFT_WORKER (JSON); it drives rate limits or a breaker and reports JSON lines on stdout.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { circuitBreakersSchema, rateLimitDomainSchema } from '../../runtime/config/config-schema.js';
import { createLogger, setLogLevel } from '../../runtime/log.js';
import type { RateLimitResponse } from '../../runtime/shared-state/rate-limiter.js';
import { createSharedState } from '../../runtime/shared-state/shared-state.js';
import { MetricsRegistry } from '../../runtime/telemetry/metrics-registry.js';

export interface LimitTask {
  task: 'limit';
  node: string;
  redisUrl: string;
  /** Epoch ms at which all workers start offering load together. */
  startAt: number;
  durationMs: number;
  /** Requests per second offered per descriptor by this worker. */
  rate: number;
  limit: number;
  gcraBurst: number;
  leaseFraction?: number;
}

export interface BreakerTask {
  task: 'breaker';
  node: string;
  redisUrl: string;
  upstream: string;
  /** ms between calls. */
  intervalMs: number;
  settings: Record<string, number>;
}

export const ACCURACY_DESCRIPTORS = {
  'fixed-strict': { algorithm: 'fixed', mode: 'strict' },
  'gcra-strict': { algorithm: 'gcra', mode: 'strict' },
  'fixed-local': { algorithm: 'fixed', mode: 'local' },
  'gcra-local': { algorithm: 'gcra', mode: 'local' },
} as const;
export type AccuracyDescriptor = keyof typeof ACCURACY_DESCRIPTORS;

export interface LimitReport {
  node: string;
  offered: Record<string, number>;
  /** ms on the shared clock of each admission (backend clock in strict mode, this host's clock in local mode). */
  admittedAt: Record<string, number[]>;
  /** Backend clock of each denial the backend itself made (strict mode), to check exactness per window. */
  backendDeniedAt: Record<string, number[]>;
  sources: Record<string, Record<string, number>>;
  backendCalls: { strict: number; local: number };
  /** Backend calls per counter id. */
  callsById: Record<string, number>;
}

setLogLevel('error');
/** Resolves once the line is handed to the OS: a piped stdout is asynchronous and process.exit would cut it. */
const print = (value: unknown): Promise<void> => new Promise((resolve) => process.stdout.write(JSON.stringify(value) + '\n', () => resolve()));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function runLimit(t: LimitTask): Promise<void> {
  const metrics = new MetricsRegistry();
  const rateLimits = [
    rateLimitDomainSchema.parse({
      domain: 'acc',
      descriptors: Object.entries(ACCURACY_DESCRIPTORS).map(([key, d]) => ({
        entries: [{ key }],
        requestsPerUnit: t.limit,
        unit: 'second',
        algorithm: d.algorithm,
        mode: d.mode,
        ...(d.algorithm === 'gcra' ? { burst: t.gcraBurst } : {}),
      })),
    }),
  ];
  const state = createSharedState(
    { backend: 'redis', redis: { url: t.redisUrl, mode: 'single', timeoutMs: 200, failMode: 'closed', keyPrefix: 'acc' } },
    { metrics, nodeName: t.node, logger: createLogger('worker'), rateLimits, ...(t.leaseFraction === undefined ? {} : { leaseFraction: t.leaseFraction }) },
  );
  await state.ready();
  const names = Object.keys(ACCURACY_DESCRIPTORS);
  const report: LimitReport = {
    node: t.node,
    offered: Object.fromEntries(names.map((n) => [n, 0])),
    admittedAt: Object.fromEntries(names.map((n) => [n, [] as number[]])),
    backendDeniedAt: Object.fromEntries(names.map((n) => [n, [] as number[]])),
    sources: Object.fromEntries(names.map((n) => [n, {}])),
    backendCalls: { strict: 0, local: 0 },
    callsById: {},
  };
  const consume = state.backend.consume.bind(state.backend);
  state.backend.consume = (spec, hits, options) => {
    report.callsById[spec.id] = (report.callsById[spec.id] ?? 0) + 1;
    return consume(spec, hits, options);
  };
  const inflight = new Set<Promise<void>>();
  const send = (name: string): void => {
    report.offered[name]!++;
    const record = (r: RateLimitResponse, at: number): void => {
      const s = r.statuses[0]!;
      const src = report.sources[name]!;
      src[s.source] = (src[s.source] ?? 0) + 1;
      if (r.overallCode === 'OK') report.admittedAt[name]!.push(s.decidedAtMs ?? at);
      else if (s.decidedAtMs !== undefined) report.backendDeniedAt[name]!.push(s.decidedAtMs);
    };
    // Stamp a synchronous decision now: its promise callback runs only after the whole batch, maybe in the next window.
    const decided = state.rateLimiter.decide({ domain: 'acc', descriptors: [{ entries: [{ key: name, value: 'global' }] }] });
    if (!(decided instanceof Promise)) return record(decided, Date.now());
    const p = decided.then((r) => record(r, Date.now()));
    inflight.add(p);
    void p.finally(() => inflight.delete(p));
  };
  await sleep(Math.max(0, t.startAt - Date.now()));
  const start = performance.now();
  const sent = new Map(names.map((n) => [n, 0]));
  for (;;) {
    const elapsed = performance.now() - start;
    if (elapsed >= t.durationMs) break;
    const due = Math.floor((elapsed / 1000) * t.rate);
    for (const n of names) {
      for (let i = sent.get(n)!; i < due; i++) send(n);
      sent.set(n, due);
    }
    await sleep(2);
  }
  await Promise.all(inflight);
  for (const mode of ['strict', 'local'] as const) {
    const m = (await metrics.registry.getSingleMetric('weft_ratelimit_backend_calls_total')?.get())?.values.find((v) => v.labels.mode === mode);
    report.backendCalls[mode] = m?.value ?? 0;
  }
  await state.close();
  await print(report);
}

async function runBreaker(t: BreakerTask): Promise<void> {
  const config = circuitBreakersSchema.parse({ defaults: t.settings });
  const state = createSharedState(
    { backend: 'redis', redis: { url: t.redisUrl, mode: 'single', timeoutMs: 200, failMode: 'open', keyPrefix: 'cbt' } },
    { metrics: new MetricsRegistry(), nodeName: t.node, logger: createLogger('worker'), circuitBreakers: config },
  );
  await state.ready();
  state.breakers.onTransition((tr) => void print({ type: 'transition', node: t.node, at: Date.now(), from: tr.from, to: tr.to, generation: tr.generation, source: tr.source }));
  let running = true;
  process.stdin.on('data', () => (running = false));
  process.stdin.on('end', () => (running = false));
  let calls = 0;
  let rejected = 0;
  await print({ type: 'ready', node: t.node });
  while (running) {
    const permit = await state.breakers.acquire('upstream');
    if (!permit.allowed) rejected++;
    else {
      calls++;
      // Probes run in the background so this node keeps deciding (and rejecting) meanwhile.
      const call = fetch(t.upstream, { headers: { 'x-node': t.node, ...(permit.probe ? { 'x-probe': '1' } : {}) } }).then(
        async (res) => {
          await res.arrayBuffer();
          state.breakers.record(permit, res.status < 500);
        },
        () => state.breakers.record(permit, false),
      );
      if (!permit.probe) await call;
    }
    await sleep(t.intervalMs);
  }
  await state.close();
  await print({ type: 'done', node: t.node, calls, rejected });
}

const SELF = fileURLToPath(import.meta.url);
/** Node arguments that run this file as a worker: through tsx from the sources, directly once compiled to dist. */
export const WORKER_ARGS: readonly string[] = SELF.endsWith('.ts') ? ['--import', 'tsx', SELF] : [SELF];

/** Runs one limit task in a child process and resolves with its report. */
export function runLimitWorker(task: LimitTask): Promise<LimitReport> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...WORKER_ARGS], { env: { ...process.env, WEFT_WORKER: JSON.stringify(task) }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    child.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`worker exited ${code}: ${err}`));
      try {
        resolve(JSON.parse(out.trim().split('\n').at(-1)) as LimitReport);
      } catch (e) {
        reject(new Error(`worker report is not JSON (${out.length} bytes): ${e instanceof Error ? e.message : String(e)}`));
      }
    });
  });
}

/** Most admissions inside any interval of `spanMs` (two-pointer sweep over sorted times). */
export function maxInSpan(times: readonly number[], spanMs: number): number {
  let best = 0;
  for (let i = 0, j = 0; j < times.length; j++) {
    while (times[j]! - times[i]! >= spanMs) i++;
    best = Math.max(best, j - i + 1);
  }
  return best;
}

/** Admissions per aligned 1 s window of the shared clock. */
export function perWindow(times: readonly number[]): Map<number, number> {
  const m = new Map<number, number>();
  for (const t of times) m.set(Math.floor(t / 1000), (m.get(Math.floor(t / 1000)) ?? 0) + 1);
  return m;
}

// Imported for its helpers and types by tests and the bench; it only runs as a worker when given a task.
if (process.env.WEFT_WORKER !== undefined) {
  const task = JSON.parse(process.env.WEFT_WORKER) as LimitTask | BreakerTask;
  const run = task.task === 'limit' ? runLimit(task) : runBreaker(task);
  run.then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`worker failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exit(1);
    },
  );
}
