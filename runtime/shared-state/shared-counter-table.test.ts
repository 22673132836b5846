// The process-wide counter table: atomic decisions from several worker threads, expiry, and eviction when a probe run is full.
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { COUNTER_KINDS, SharedCounterTable } from './shared-counter-table.js';
import { MemoryBackend, MemoryStore } from './state-memory.js';

describe('SharedCounterTable', () => {
  it('stores per kind and id, and forgets what expired', () => {
    const t = new SharedCounterTable(64);
    t.withLock(() => {
      t.write(COUNTER_KINDS.window, 'a', 7, 3, 1_000, 0);
      t.write(COUNTER_KINDS.gcra, 'a', 99, 0, 2_000, 0);
    });
    expect(t.withLock(() => t.read(COUNTER_KINDS.window, 'a', 500))).toEqual({ a: 7, b: 3, expiresUs: 1_000 });
    expect(t.withLock(() => t.read(COUNTER_KINDS.gcra, 'a', 500))?.a).toBe(99);
    expect(t.withLock(() => t.read(COUNTER_KINDS.window, 'a', 1_000))).toBeUndefined();
    expect(t.withLock(() => t.read(COUNTER_KINDS.window, 'b', 0))).toBeUndefined();
  });

  it('evicts the soonest-expiring entry when every slot it may use is live', () => {
    const t = new SharedCounterTable(8);
    t.withLock(() => {
      for (let i = 0; i < 8; i++) t.write(COUNTER_KINDS.window, `k${i}`, i, 1, 10_000 + i, 0);
      t.write(COUNTER_KINDS.window, 'new', 1, 1, 50_000, 0);
    });
    expect(t.withLock(() => t.read(COUNTER_KINDS.window, 'new', 0))?.a).toBe(1);
    expect(t.withLock(() => t.read(COUNTER_KINDS.window, 'k0', 0))).toBeUndefined();
    expect(t.withLock(() => t.read(COUNTER_KINDS.window, 'k7', 0))?.a).toBe(7);
  });

  it('a view made from the buffer sees the same counters (what a worker thread gets)', () => {
    const store = new MemoryStore(() => 1_700_000_000_000, new SharedCounterTable(256));
    const a = new MemoryBackend(store);
    const b = new MemoryBackend(new MemoryStore(() => 1_700_000_000_000, new SharedCounterTable(store.table!.buffer)));
    const spec = { id: 'x', algorithm: 'fixed' as const, limit: 3, windowMs: 60_000, burst: 3 };
    expect([a, b, a, b].map((x) => x.consumeNow(spec, 1, 0).allowed)).toEqual([true, true, true, false]);
  });

  it('four threads deciding at once admit exactly the limit', async () => {
    const table = new SharedCounterTable(1024);
    const limit = 5_000;
    const entry = new URL('./shared-counter-table.ts', import.meta.url).href;
    const memory = new URL('./state-memory.ts', import.meta.url).href;
    // Each thread offers 2 000 decisions on one counter as fast as it can; the lock makes read-decide-write atomic.
    const body = `
      const { workerData, parentPort } = await import('node:worker_threads');
      const { SharedCounterTable } = await import(${JSON.stringify(entry)});
      const { MemoryBackend, MemoryStore } = await import(${JSON.stringify(memory)});
      const backend = new MemoryBackend(new MemoryStore(undefined, new SharedCounterTable(workerData.buffer)));
      const spec = { id: 'hot', algorithm: 'fixed', limit: ${limit}, windowMs: 3600000, burst: ${limit} };
      let allowed = 0;
      for (let i = 0; i < 2000; i++) if (backend.consumeNow(spec, 1, 0).allowed) allowed++;
      parentPort.postMessage(allowed);`;
    const run = (): Promise<number> =>
      new Promise((resolve, reject) => {
        const w = new Worker(`import('tsx/esm/api').then((tsx) => { tsx.register(); return import('data:text/javascript,' + encodeURIComponent(${JSON.stringify(body)})); })`, { eval: true, workerData: { buffer: table.buffer } });
        w.once('message', (n: number) => {
          resolve(n);
          void w.terminate();
        });
        w.once('error', reject);
      });
    const counts = await Promise.all([run(), run(), run(), run()]);
    expect(counts.reduce((a, b) => a + b, 0)).toBe(limit);
  }, 60_000);
});
