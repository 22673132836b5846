// W3C traceparent handling: a valid incoming trace continues with a new span, anything else starts a trace, and ids stay well-formed and distinct across random-pool refills.
import { describe, expect, it } from 'vitest';
import { continueTrace, newRequestId } from './traceparent.js';

describe('continueTrace', () => {
  it('keeps the trace id and flags of a valid header and draws a new span id', () => {
    const t = continueTrace('00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
    expect(t.traceId).toBe('0af7651916cd43dd8448eb211c80319c');
    expect(t.parentSpanId).toBe('b7ad6b7169203331');
    expect(t.spanId).toMatch(/^[0-9a-f]{16}$/);
    expect(t.spanId).not.toBe('b7ad6b7169203331');
    expect(t.header).toBe(`00-0af7651916cd43dd8448eb211c80319c-${t.spanId}-01`);
  });

  it('starts a trace for a missing, malformed or all-zero header', () => {
    for (const h of [undefined, 'garbage', `00-${'0'.repeat(32)}-b7ad6b7169203331-01`, '00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01']) {
      const t = continueTrace(h);
      expect(t.parentSpanId).toBeUndefined();
      expect(t.header).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
    }
  });

  it('hands out distinct well-formed ids across several refills of the random pool', () => {
    const seen = new Set<string>();
    // 8 KiB of random bytes per refill: 2000 traces (24 bytes each) cross it several times.
    for (let i = 0; i < 2000; i++) {
      const t = continueTrace(undefined);
      expect(t.traceId).toMatch(/^[0-9a-f]{32}$/);
      seen.add(t.traceId);
    }
    expect(seen.size).toBe(2000);
    expect(newRequestId()).toMatch(/^[0-9a-f]{32}$/);
  });
});
