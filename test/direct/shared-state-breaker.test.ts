// Breaker convergence across 3 weft-like processes sharing one Redis: a fault local to one node opens nothing, a shared fault opens all, one probe at a time cluster-wide, recovery.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRedis, type RedisProcess } from '../helpers/redis-server.js';
import { hasCommand, requireCommands } from '../helpers/requirements.js';
import { WORKER_ARGS, type BreakerTask } from './shared-state-worker.js';

const OPEN_MS = 300;
const PROBE_DELAY_MS = 40;

interface Event {
  type: string;
  node: string;
  at: number;
  to?: string;
  generation?: number;
}

/** The upstream: healthy, failing for everyone, or failing for one node only; it sees probes overlap or not. */
class Upstream {
  mode: 'healthy' | 'failing' | 'failing-node-0' = 'healthy';
  probesInFlight = 0;
  maxProbesInFlight = 0;
  probes: { node: string; at: number }[] = [];
  requests = 0;
  server: Server = createServer((req, res) => {
    this.requests++;
    const node = String(req.headers['x-node']);
    const fail = this.mode === 'failing' || (this.mode === 'failing-node-0' && node === 'node-0');
    const answer = (): void => {
      res.writeHead(fail ? 503 : 200).end();
    };
    if (req.headers['x-probe'] !== '1') return answer();
    this.probes.push({ node, at: Date.now() });
    this.maxProbesInFlight = Math.max(this.maxProbesInFlight, ++this.probesInFlight);
    setTimeout(() => {
      this.probesInFlight--;
      answer();
    }, PROBE_DELAY_MS);
  });
}

describe('shared circuit breaker across 3 processes', () => {
  let redis: RedisProcess;
  const upstream = new Upstream();
  const workers: ChildProcessWithoutNullStreams[] = [];
  const events: Event[] = [];

  const waitFor = async (what: string, check: () => boolean, timeoutMs = 10_000): Promise<void> => {
    const end = Date.now() + timeoutMs;
    while (!check()) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}; events: ${JSON.stringify(events.slice(-12))}`);
      await new Promise((r) => setTimeout(r, 5));
    }
  };
  const lastState = (node: string): string => events.filter((e) => e.type === 'transition' && e.node === node).at(-1)?.to ?? 'CLOSED';
  const nodes = ['node-0', 'node-1', 'node-2'];

  beforeAll(async () => {
    if (!hasCommand('redis-server')) return; // each test skips itself with the reason
    redis = await startRedis();
    await new Promise<void>((r) => upstream.server.listen(0, '127.0.0.1', r));
    const address = upstream.server.address();
    const port = typeof address === 'object' && address !== null ? address.port : 0;
    for (const node of nodes) {
      const task: BreakerTask = {
        task: 'breaker',
        node,
        redisUrl: redis.url,
        upstream: `http://127.0.0.1:${port}/`,
        intervalMs: 5,
        settings: { minimumCalls: 20, failureRateThreshold: 50, windowMs: 1_000, openMs: OPEN_MS, probeTimeoutMs: 1_000, minReportingNodes: 2, flushIntervalMs: 50, pollIntervalMs: 500 },
      };
      const child = spawn(process.execPath, [...WORKER_ARGS], { env: { ...process.env, WEFT_WORKER: JSON.stringify(task) } });
      let buffer = '';
      child.stdout.on('data', (c: Buffer) => {
        buffer += c.toString();
        let nl: number;
        while ((nl = buffer.indexOf('\n')) >= 0) {
          events.push(JSON.parse(buffer.slice(0, nl)) as Event);
          buffer = buffer.slice(nl + 1);
        }
      });
      workers.push(child);
    }
    await waitFor('3 workers ready', () => events.filter((e) => e.type === 'ready').length === 3, 30_000);
  }, 60_000);

  afterAll(async () => {
    await Promise.all(
      workers.map(
        (w) =>
          new Promise<void>((resolve) => {
            if (w.exitCode !== null) return resolve();
            w.once('exit', () => resolve());
            w.stdin.end('stop\n');
            setTimeout(() => w.kill('SIGKILL'), 5_000).unref();
          }),
      ),
    );
    await new Promise<void>((r) => upstream.server.close(() => r()));
    await redis?.stop();
  });

  it('a fault seen by one node only opens nothing (minReportingNodes 2)', async (ctx) => {
    requireCommands(ctx, 'redis-server', 'redis-cli');
    upstream.mode = 'failing-node-0';
    await new Promise((r) => setTimeout(r, 800));
    upstream.mode = 'healthy';
    expect(events.filter((e) => e.type === 'transition')).toEqual([]);
    // Let the failures age out of the 1 s window before the shared fault.
    await new Promise((r) => setTimeout(r, 1_100));
  });

  it('a shared fault opens all nodes quickly, probes one at a time cluster-wide, and recovery closes all', async (ctx) => {
    requireCommands(ctx, 'redis-server', 'redis-cli');
    const faultAt = Date.now();
    upstream.mode = 'failing';
    await waitFor('all OPEN', () => nodes.every((n) => lastState(n) === 'OPEN'));
    const opened = nodes.map((n) => events.find((e) => e.type === 'transition' && e.node === n && e.to === 'OPEN')!.at);
    const convergenceMs = Math.max(...opened) - faultAt;
    const spreadMs = Math.max(...opened) - Math.min(...opened);
    // Let a few OPEN → HALF_OPEN → failed probe → OPEN cycles run while failing.
    await new Promise((r) => setTimeout(r, 4 * OPEN_MS));
    const probesWhileFailing = upstream.probes.length;
    const healAt = Date.now();
    upstream.mode = 'healthy';
    await waitFor('all CLOSED', () => nodes.every((n) => lastState(n) === 'CLOSED'));
    const closed = nodes.map((n) => events.filter((e) => e.type === 'transition' && e.node === n && e.to === 'CLOSED').at(-1).at);
    const recoveryMs = Math.max(...closed) - healAt;
    process.stdout.write(`breaker convergence: ${JSON.stringify({ convergenceMs, spreadMs, probesWhileFailing, recoveryMs, maxProbesInFlight: upstream.maxProbesInFlight })}\n`);

    // Detection needs the failure rate over the 1 s window to pass 50 %; propagation is the spread.
    expect(convergenceMs).toBeLessThan(1_000);
    expect(spreadMs).toBeLessThan(200);
    expect(probesWhileFailing).toBeGreaterThanOrEqual(2);
    expect(upstream.maxProbesInFlight).toBe(1);
    expect(recoveryMs).toBeLessThan(OPEN_MS + PROBE_DELAY_MS + 1_000);
    // Every node saw the same shared generations for OPEN.
    const gens = (n: string): number[] => events.filter((e) => e.node === n && e.to === 'OPEN' && e.type === 'transition').map((e) => e.generation!);
    expect(gens('node-1')[0]).toBe(gens('node-0')[0]);
    expect(gens('node-2')[0]).toBe(gens('node-0')[0]);
  });
});
