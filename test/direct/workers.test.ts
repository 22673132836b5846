// `workers: 4`: four worker threads, each accepting on its own SO_REUSEPORT sockets, behind one primary that serves
// metrics, /config_dump and readiness for the process, keeps rate limits process-wide, reloads all-or-none, drains all
// workers and replaces one that dies.
import net from 'node:net';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { createWorkerPrimary, type WorkerPrimary } from '../../runtime/workers/worker-primary.js';
import { resolveWorkerCount } from '../../runtime/workers/worker-count.js';
import { setLogLevel, setLogSink } from '../../runtime/log.js';
import { ensurePluginBuilt } from '../../sdk/testing/index.js';
import { metricValue, testConfig, type AccessLogEntry } from '../helpers/weft-harness.js';
import { startTcpServer, type TestServer } from '../helpers/tcp-server.js';
import { startHttpUpstream, type Upstream } from './l7-harness.js';

setLogLevel('warn');
const WORKERS = 4;
const LIMIT = 25;

interface Running {
  primary: WorkerPrimary;
  accessLog: AccessLogEntry[];
  logs: Record<string, unknown>[];
  restoreLogs: () => void;
}

let up: Upstream;
let echo: TestServer;
let ratelimitWasm: string;

function rawConfig(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    workers: WORKERS,
    listeners: { outbound: { address: '127.0.0.1:0' }, inbound: { address: '127.0.0.1:0' }, explicitProxy: { address: '127.0.0.1:0' }, admin: '127.0.0.1:0', metrics: '127.0.0.1:0', readiness: '127.0.0.1:0' },
    // A generous CPU budget: the first calls of a cold VM on a shared, loaded test machine can take tens of ms.
    plugins: [{ name: 'ratelimit', url: pathToFileURL(ratelimitWasm).href, limits: { cpuMs: 2_000 }, config: { domain: 'api', descriptors: [[{ key: 'generic_key', value: 'all' }]] } }],
    rateLimits: [{ domain: 'api', descriptors: [{ entries: [{ key: 'generic_key', value: 'all' }], requestsPerUnit: LIMIT, unit: 'hour' }] }],
    workloads: [
      { name: 'api-1', addresses: ['127.0.0.1'], labels: { app: 'api' } },
      { name: 'echo-1', addresses: ['127.0.0.2'], labels: { app: 'echo' } },
    ],
    services: [
      { name: 'api', addresses: ['10.96.0.80'], ports: [{ port: 80, targetPort: up.port, appProtocol: 'http' }], selector: { app: 'api' }, annotations: { 'weft.dev/plugins': 'ratelimit' } },
      { name: 'echo', addresses: ['10.96.0.81'], ports: [{ port: 7, targetPort: echo.port }], selector: { app: 'echo' } },
    ],
    localPorts: [
      { listen: '127.0.0.1:0', service: 'api.default', port: 80 },
      { listen: '127.0.0.3:0', service: 'echo.default', port: 7 },
    ],
    ...extra,
  };
}

async function start(extra: Record<string, unknown> = {}): Promise<Running> {
  const accessLog: AccessLogEntry[] = [];
  const logs: Record<string, unknown>[] = [];
  const previous = setLogSink((line) => logs.push(JSON.parse(line) as Record<string, unknown>));
  const config = testConfig(rawConfig(extra));
  const primary = await createWorkerPrimary(config, { count: resolveWorkerCount(config.workers), accessLogSink: (line) => accessLog.push(JSON.parse(line) as AccessLogEntry) });
  return { primary, accessLog, logs, restoreLogs: () => setLogSink(previous) };
}

const apiPort = (r: Running): number => r.primary.ports.localPorts['127.0.0.1:0']!;
const echoPort = (r: Running): number => r.primary.ports.localPorts['127.0.0.3:0']!;

/** One HTTP request on its own connection, so the kernel picks a worker for each. */
async function get(port: number): Promise<number> {
  const res = await request(`http://127.0.0.1:${port}/`, { headers: { connection: 'close' }, reset: true });
  await res.body.text();
  return res.statusCode;
}

/** An open L4 connection through the echo service; `ping` checks it still carries bytes both ways. */
async function openEcho(port: number): Promise<{ socket: net.Socket; ping: (text: string) => Promise<string | Error> }> {
  const socket = net.connect({ port, host: '127.0.0.3' });
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  socket.on('error', () => {});
  const ping = (text: string): Promise<string | Error> =>
    new Promise((resolve) => {
      let got = '';
      const onData = (d: Buffer): void => {
        got += d.toString();
        if (got.length >= text.length) done(got);
      };
      const onEnd = (): void => done(new Error('closed'));
      const timer = setTimeout(() => done(new Error('timeout')), 3_000);
      const done = (v: string | Error): void => {
        clearTimeout(timer);
        socket.off('data', onData).off('close', onEnd).off('end', onEnd);
        resolve(v);
      };
      socket.on('data', onData).once('close', onEnd).once('end', onEnd);
      if (socket.destroyed) return done(new Error('closed'));
      socket.write(text);
    });
  return { socket, ping };
}

async function until(pred: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await pred())) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function scrape(r: Running): Promise<string> {
  return (await fetch(`http://127.0.0.1:${String(r.primary.ports.metrics)}/stats/prometheus`)).text();
}

async function dump(r: Running): Promise<{ version: number; workers: { count: number; reason: string; running: number; threads: { id: number; version: number; activeConnections: number; configSha256: string; logLevels: Record<string, string> }[] }; namespaces: unknown }> {
  return (await fetch(`http://127.0.0.1:${String(r.primary.ports.admin)}/config_dump`)).json() as never;
}

beforeAll(async () => {
  ratelimitWasm = await ensurePluginBuilt(fileURLToPath(new URL('../../plugins/ratelimit', import.meta.url)));
  up = await startHttpUpstream('127.0.0.1', 0, (_req, res) => res.end('ok'));
  echo = await startTcpServer('echo', '127.0.0.2');
}, 120_000);
afterAll(async () => {
  await up?.close();
  await echo?.close();
});

describe('workers: 4', () => {
  let r: Running;
  beforeAll(async () => {
    r = await start();
  }, 60_000);
  afterAll(async () => {
    await r?.primary.shutdown(100);
    r?.restoreLogs();
  });

  it('spreads connections over several workers, holds one rate limit for the process, and sums metrics', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 80; i += 8) statuses.push(...(await Promise.all(Array.from({ length: 8 }, () => get(apiPort(r))))));
    // The limit is one budget across the four event loops: exactly LIMIT admitted, not LIMIT per worker.
    expect(statuses.filter((s) => s === 200)).toHaveLength(LIMIT);
    expect(statuses.filter((s) => s === 429)).toHaveLength(80 - LIMIT);

    await until(() => r.accessLog.filter((e) => e.kind === 'http').length >= 80);
    const perWorker = new Map<unknown, number>();
    for (const e of r.accessLog.filter((l) => l.kind === 'http')) perWorker.set(e.worker, (perWorker.get(e.worker) ?? 0) + 1);
    // The kernel hashes each new connection to one of the four SO_REUSEPORT sockets: 80 connections reach several.
    expect(perWorker.size).toBeGreaterThanOrEqual(2);
    for (const id of perWorker.keys()) expect([0, 1, 2, 3]).toContain(id);

    const text = await scrape(r);
    // One scrape for the process: counters summed over the workers that served.
    expect(metricValue(text, 'istio_requests_total', { response_code: '200' })).toBe(LIMIT);
    expect(metricValue(text, 'istio_requests_total', { response_code: '429' })).toBe(80 - LIMIT);
    expect(metricValue(text, 'istio_request_duration_milliseconds_count')).toBe(80);
    expect(metricValue(text, 'weft_workers', { state: 'running' })).toBe(WORKERS);
    expect(metricValue(text, 'weft_build_info')).toBe(1);
    // Every HELP/TYPE once: one exposition, not four concatenated.
    expect(text.match(/^# TYPE istio_requests_total /gm)).toHaveLength(1);
  });

  it('says in /config_dump how many workers run and why; readiness is the process', async () => {
    const d = await dump(r);
    expect(d.workers).toMatchObject({ count: WORKERS, requested: WORKERS, running: WORKERS });
    expect(d.workers.reason).toContain('workers: 4 from the config');
    expect(d.workers.threads.map((t) => t.id).sort()).toEqual([0, 1, 2, 3]);
    expect((await fetch(`http://127.0.0.1:${String(r.primary.ports.readiness)}/healthz/ready`)).status).toBe(200);
    // POST /logging on the primary's admin port reaches every worker.
    expect((await fetch(`http://127.0.0.1:${String(r.primary.ports.admin)}/logging?l7=debug`, { method: 'POST' })).status).toBe(200);
    await until(async () => (await dump(r)).workers.threads.every((t) => t.logLevels.l7 === 'debug'));
    await fetch(`http://127.0.0.1:${String(r.primary.ports.admin)}/logging?l7=warn`, { method: 'POST' });
  });

  it('applies a reload on every worker while requests flow, failing none', async () => {
    let stop = false;
    const failures: unknown[] = [];
    let sent = 0;
    const load = async (): Promise<void> => {
      while (!stop) {
        const c = await openEcho(echoPort(r)).catch((err: unknown) => err as Error);
        if (c instanceof Error) {
          failures.push(c);
          continue;
        }
        const reply = await c.ping('hello');
        if (reply !== 'hello') failures.push(reply);
        c.socket.destroy();
        sent++;
      }
    };
    const loaders = Array.from({ length: 4 }, load);
    const initial = await dump(r);
    const before = initial.version;
    for (let i = 0; i < 3; i++) {
      const next = testConfig(rawConfig({ namespaces: [{ name: 'default', labels: { reload: String(i) } }] }));
      expect(await r.primary.reload(next)).toEqual({ ok: true });
    }
    const applied = (await dump(r)).workers.threads.map((t) => t.configSha256);
    // A plugin the primary cannot fetch is refused before any worker sees it.
    const missing = testConfig(rawConfig({ plugins: [{ name: 'ratelimit', url: 'file:///nonexistent/ratelimit.wasm' }] }));
    expect((await r.primary.reload(missing)).ok).toBe(false);
    // A plugin that compiles but refuses its configuration in the workers' VMs: refused by all, applied by none.
    const refused = testConfig(rawConfig({ plugins: [{ name: 'ratelimit', url: pathToFileURL(ratelimitWasm).href, config: { descriptors: 'not a list' } }] }));
    const result = await r.primary.reload(refused);
    expect(result.ok).toBe(false);
    expect((await dump(r)).workers.threads.map((t) => t.configSha256)).toEqual(applied);
    stop = true;
    await Promise.all(loaders);
    expect(failures).toEqual([]);
    expect(sent).toBeGreaterThan(0);
    const d = await dump(r);
    expect(d.version).toBe(before + 3);
    // Every worker runs one configuration, and a new one.
    const running = new Set(d.workers.threads.map((t) => t.configSha256));
    expect(running.size).toBe(1);
    expect(running.has(initial.workers.threads[0]!.configSha256)).toBe(false);
    const text = await scrape(r);
    expect(metricValue(text, 'weft_config_reloads_total', { result: 'applied' })).toBe(3);
    expect(metricValue(text, 'weft_config_reloads_total', { result: 'rejected' })).toBe(2);
  });

  it('replaces a worker that dies; connections held by the others keep flowing', async () => {
    const conns = await Promise.all(Array.from({ length: 16 }, () => openEcho(echoPort(r))));
    for (const c of conns) expect(await c.ping('x')).toBe('x');
    const held = new Map((await dump(r)).workers.threads.map((t) => [t.id, t.activeConnections]));
    const victim = [...held].find(([, n]) => n > 0)![0];
    const elsewhere = 16 - held.get(victim)!;
    await r.primary.terminateWorker(victim);
    const replies = await Promise.all(conns.map((c) => c.ping('still-there')));
    // Exactly the victim's connections ended; every other worker's connection still echoes.
    expect(replies.filter((x) => x === 'still-there')).toHaveLength(elsewhere);
    for (const c of conns) c.socket.destroy();
    await r.primary.waitForWorker(victim);
    const text = await scrape(r);
    expect(metricValue(text, 'weft_worker_exits_total')).toBe(1);
    expect(metricValue(text, 'weft_workers', { state: 'running' })).toBe(WORKERS);
    expect(r.logs.some((l) => l.msg === 'worker thread died; starting a replacement' && l.worker === victim)).toBe(true);
    // The replacement serves on the same port.
    const c = await openEcho(echoPort(r));
    expect(await c.ping('new')).toBe('new');
    c.socket.destroy();
  });
});

describe('drain with workers: 4', () => {
  it('finishes every worker: listeners close, open connections get the deadline, then end', async () => {
    const r = await start();
    try {
      const conns = await Promise.all(Array.from({ length: 12 }, () => openEcho(echoPort(r))));
      for (const c of conns) expect(await c.ping('x')).toBe('x');
      const holders = (await dump(r)).workers.threads.filter((t) => t.activeConnections > 0);
      expect(holders.length).toBeGreaterThanOrEqual(2);
      const port = echoPort(r);
      const shutdown = r.primary.shutdown(10_000);
      // Readiness goes false and no worker accepts any more...
      await until(() => !r.primary.ready);
      await until(async () => (await openEcho(port).then((c) => (c.socket.destroy(), false), () => true)));
      // ...while connections every worker already held still carry bytes until their clients finish.
      for (const c of conns) expect(await c.ping('draining')).toBe('draining');
      for (const c of conns) c.socket.end();
      expect(await shutdown).toEqual({ forced: 0 });
      await until(() => r.accessLog.filter((e) => e.kind === 'tcp' && e.listener === 'local-port').length >= 12);
      const logged = new Set(r.accessLog.filter((e) => e.kind === 'tcp').map((e) => e.worker));
      for (const h of holders) expect(logged.has(h.id)).toBe(true);
    } finally {
      r.restoreLogs();
    }
  }, 60_000);
});
