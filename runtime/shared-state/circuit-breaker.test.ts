// Shared breakers over one memory store, three "nodes" in process: aggregate opening, quorum, one probe cluster-wide, local fallback.
import { afterEach, describe, expect, it } from 'vitest';
import { circuitBreakersSchema } from '../config/config-schema.js';
import { createLogger, setLogLevel } from '../log.js';
import { MetricsRegistry } from '../telemetry/metrics-registry.js';
import { SharedBreakers, type BreakerPermit } from './circuit-breaker.js';
import { MemoryBackend, MemoryStore } from './state-memory.js';

setLogLevel('warn');
const open: SharedBreakers[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((b) => b.close()));
});

function nodes(count: number, overrides: Record<string, number> = {}, backend?: (store: MemoryStore) => MemoryBackend): SharedBreakers[] {
  const store = new MemoryStore();
  const config = circuitBreakersSchema.parse({
    defaults: { minimumCalls: 6, failureRateThreshold: 50, windowMs: 5_000, openMs: 150, flushIntervalMs: 10, pollIntervalMs: 100, probeTimeoutMs: 1_000, ...overrides },
  });
  const list = Array.from(
    { length: count },
    (_, i) => new SharedBreakers(backend?.(store) ?? new MemoryBackend(store), { nodeName: `n${i}`, config, metrics: new MetricsRegistry(), logger: createLogger('cb') }),
  );
  open.push(...list);
  return list;
}

async function call(b: SharedBreakers, name: string, success: boolean): Promise<BreakerPermit> {
  const p = await b.acquire(name);
  b.record(p, success);
  return p;
}

const until = async (check: () => boolean, timeoutMs = 2_000): Promise<void> => {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error('condition not reached');
    await new Promise((r) => setTimeout(r, 5));
  }
};

describe('SharedBreakers', () => {
  it('opens everywhere from failures seen across nodes, then probes once cluster-wide and closes', async () => {
    const [a, b, c] = nodes(3);
    for (const n of [a!, b!, c!]) for (let i = 0; i < 3; i++) await call(n, 'up', false);
    await until(() => [a!, b!, c!].every((n) => n.state('up') === 'OPEN'));
    expect((await a!.acquire('up')).allowed).toBe(false);
    await new Promise((r) => setTimeout(r, 170));
    const permits = await Promise.all([a!, b!, c!].flatMap((n) => [Promise.resolve(n.acquire('up')), Promise.resolve(n.acquire('up'))]));
    const probes = permits.filter((p) => p.allowed);
    expect(probes).toHaveLength(1);
    expect(probes[0]!.probe).toBe(true);
    const prober = [a!, b!, c!][Math.floor(permits.indexOf(probes[0]!) / 2)]!;
    prober.record(probes[0]!, true);
    await until(() => [a!, b!, c!].every((n) => n.state('up') === 'CLOSED'));
    expect((await b!.acquire('up')).allowed).toBe(true);
  });

  it('a failed probe re-opens for everyone', async () => {
    const [a, b] = nodes(2);
    for (let i = 0; i < 6; i++) await call(a!, 'x', false);
    await until(() => b!.state('x') === 'OPEN');
    await new Promise((r) => setTimeout(r, 170));
    const p = await b!.acquire('x');
    expect(p.probe).toBe(true);
    b!.record(p, false);
    await until(() => a!.state('x') === 'OPEN' && b!.state('x') === 'OPEN');
    expect((await a!.acquire('x')).allowed).toBe(false);
  });

  it('one node failing alone does not open a breaker that needs two reporting nodes', async () => {
    const [a, b] = nodes(2, { minReportingNodes: 2 });
    for (let i = 0; i < 20; i++) await call(a!, 'y', false);
    for (let i = 0; i < 20; i++) await call(b!, 'y', true);
    await new Promise((r) => setTimeout(r, 60));
    expect(a!.state('y')).toBe('CLOSED');
    expect(b!.state('y')).toBe('CLOSED');
    await call(b!, 'y', false);
    for (let i = 0; i < 20; i++) await call(a!, 'y', false);
    await until(() => a!.state('y') === 'OPEN' && b!.state('y') === 'OPEN');
  });

  it('acts as a local breaker while the backend is unreachable', async () => {
    class Down extends MemoryBackend {
      override isHealthy(): boolean {
        return false;
      }
    }
    const [a, b] = nodes(2, {}, (store) => new Down(store));
    for (let i = 0; i < 6; i++) await call(a!, 'z', false);
    expect(a!.state('z')).toBe('OPEN');
    expect(b!.state('z')).toBe('CLOSED');
    await new Promise((r) => setTimeout(r, 170));
    const p = await a!.acquire('z');
    expect(p).toMatchObject({ allowed: true, probe: true });
    expect((await a!.acquire('z')).allowed).toBe(false);
    a!.record(p, true);
    expect(a!.state('z')).toBe('CLOSED');
  });
});
