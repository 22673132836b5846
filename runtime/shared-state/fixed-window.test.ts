// The fixed-window decision written in place (fixedWindowDecideInto, the memory backend's consumeNow with a result to
// fill) decides exactly as the value form: same grants, remaining and times, denials never counted.
import { describe, expect, it } from 'vitest';
import { fixedWindowDecide, fixedWindowDecideInto, newFixedWindowScratch } from './fixed-window.js';
import { MemoryBackend, MemoryStore } from './state-memory.js';
import { newConsumeResult, type LimitSpec } from './state-backend.js';

describe('fixed window in place', () => {
  it('fixedWindowDecideInto agrees with fixedWindowDecide, stored counter or not, in or out of its window', () => {
    const out = newFixedWindowScratch();
    const windowUs = 60_000_000;
    const now = 1_700_000_000_500_123;
    const cases: [{ window: number; count: number } | undefined, number, number, number][] = [
      [undefined, 3, 1, 0],
      [{ window: Math.floor(now / windowUs), count: 2 }, 3, 1, 0],
      [{ window: Math.floor(now / windowUs), count: 3 }, 3, 1, 0],
      [{ window: Math.floor(now / windowUs) - 1, count: 3 }, 3, 1, 0],
      [{ window: Math.floor(now / windowUs), count: 1 }, 3, 5, 1],
      [{ window: Math.floor(now / windowUs), count: 1 }, 3, 0, 0],
    ];
    for (const [stored, limit, hits, minGrant] of cases) {
      const want = fixedWindowDecide(stored, now, windowUs, limit, hits, minGrant);
      fixedWindowDecideInto(stored?.window ?? Number.NaN, stored?.count ?? 0, now, windowUs, limit, hits, minGrant, out);
      expect({ allowed: out.allowed, granted: out.granted, remaining: out.remaining, resetMs: out.resetMs, retryAfterMs: out.retryAfterMs }).toEqual(want.result);
      if (want.write === undefined) expect(out.granted).toBe(0);
      else expect({ window: out.window, count: out.count }).toEqual(want.write);
    }
  });

  it('consumeNow fills and returns the caller\'s result, deciding as without it', () => {
    const spec: LimitSpec = { id: 'c', algorithm: 'fixed', limit: 2, windowMs: 60_000, burst: 2 };
    const clock = (): number => 1_700_000_000_500;
    const filled = new MemoryBackend(new MemoryStore(clock));
    const fresh = new MemoryBackend(new MemoryStore(clock));
    const into = newConsumeResult();
    for (let i = 0; i < 3; i++) {
      const got = filled.consumeNow(spec, 1, 0, into);
      expect(got).toBe(into);
      expect({ ...got }).toEqual(fresh.consumeNow(spec, 1, 0));
    }
    expect(into).toMatchObject({ allowed: false, remaining: 0, granted: 0 });
  });
});
