// W3C traceparent handling: a valid incoming trace continues with a new span, anything else starts a trace, and ids stay well-formed and distinct across random-pool refills.
import { describe, expect, it } from 'vitest';
import { continueTrace, continueTraceLine, newRequestId } from './traceparent.js';

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

describe('continueTraceLine', () => {
  it('is the traceparent field line of the same context, with ids cut from it', () => {
    const t = continueTraceLine('00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
    expect(t.line).toBe(`traceparent: 00-0af7651916cd43dd8448eb211c80319c-${t.spanId}-01\r\n`);
    expect(t.traceId).toBe('0af7651916cd43dd8448eb211c80319c');
    expect(t.parentSpanId).toBe('b7ad6b7169203331');
    expect(t.flags).toBe('01');
    expect(t.header).toBe(`00-0af7651916cd43dd8448eb211c80319c-${t.spanId}-01`);
  });

  it('starts well-formed, distinct traces across several refills of its block of lines', () => {
    const seen = new Set<string>();
    // 256 lines per block: 1,000 traces cross it several times.
    for (let i = 0; i < 1000; i++) {
      const t = continueTraceLine(i % 2 === 0 ? undefined : `00-${'0'.repeat(32)}-b7ad6b7169203331-01`);
      expect(t.line).toMatch(/^traceparent: 00-[0-9a-f]{32}-[0-9a-f]{16}-01\r\n$/);
      expect(t.header).toBe(t.line.slice('traceparent: '.length, -2));
      expect(t.parentSpanId).toBeUndefined();
      seen.add(t.traceId).add(t.spanId);
    }
    expect(seen.size).toBe(2000);
  });

  it('draws every hex digit in every position of the ids it starts (both nibbles of each random byte are used)', () => {
    const firsts = new Set<string>();
    const lasts = new Set<string>();
    const spanFirsts = new Set<string>();
    for (let i = 0; i < 2000; i++) {
      const t = continueTraceLine(undefined);
      firsts.add(t.traceId[0]!);
      lasts.add(t.traceId[31]!);
      spanFirsts.add(t.spanId[0]!);
    }
    for (const s of [firsts, lasts, spanFirsts]) expect([...s].sort().join('')).toBe('0123456789abcdef');
  });
});
