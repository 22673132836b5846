// BatchedCounter: increments kept in plain numbers reach prom-client when the counter is read, by scrape or get().
import { describe, expect, it } from 'vitest';
import { BatchedCounter } from './batched-counter.js';
import { MetricsRegistry } from './metrics-registry.js';

describe('BatchedCounter', () => {
  it('shows pending increments in the exposition and in get(), once each', async () => {
    const m = new MetricsRegistry();
    const c = m.counter('t_total', 'test', ['code']);
    const ok = BatchedCounter.of(c).series({ code: 'OK' });
    const over = BatchedCounter.of(c).series({ code: 'OVER' });
    for (let i = 0; i < 5; i++) ok.inc();
    over.inc();
    expect(await m.render()).toMatch(/t_total\{code="OK"\} 5/);
    ok.inc();
    const values = (await c.get()).values;
    expect(values.find((v) => v.labels.code === 'OK')?.value).toBe(6);
    expect(values.find((v) => v.labels.code === 'OVER')?.value).toBe(1);
    // A second read adds nothing: the pending counts were moved, not copied.
    expect(await m.render()).toMatch(/t_total\{code="OK"\} 6/);
  });

  it('is one batch per counter and one series per label set, whatever the key order', async () => {
    const m = new MetricsRegistry();
    const c = m.counter('u_total', 'test', ['a', 'b']);
    expect(BatchedCounter.of(c)).toBe(BatchedCounter.of(c));
    const x = BatchedCounter.of(c).series({ a: '1', b: '2' });
    expect(BatchedCounter.of(c).series({ b: '2', a: '1' })).toBe(x);
    x.inc();
    c.inc({ a: '1', b: '2' });
    expect(await m.render()).toMatch(/u_total\{a="1",b="2"\} 2/);
  });
});
