// RateLimitPayloadCache: one value per distinct payload with the call id left out, bounded by its slots and payload
// size, and nothing kept for a payload its maker refuses.
import { describe, expect, it } from 'vitest';
import { RateLimitPayloadCache } from './rate-limit-payload-cache.js';

/** A payload-shaped buffer: tag, flags, count, the call id at 4..7, then `body`. */
function payload(id: number, body: string): Uint8Array {
  const b = new Uint8Array(12 + body.length);
  b[0] = 1;
  new DataView(b.buffer).setUint32(4, id, true);
  for (let i = 0; i < body.length; i++) b[12 + i] = body.charCodeAt(i);
  return b;
}

function counting(options?: ConstructorParameters<typeof RateLimitPayloadCache>[1]): { cache: RateLimitPayloadCache<string>; made: string[] } {
  const made: string[] = [];
  const cache = new RateLimitPayloadCache((b) => {
    const body = String.fromCharCode(...b.subarray(12));
    if (body.startsWith('bad')) throw new Error(`refused ${body}`);
    made.push(body);
    return `value of ${body}`;
  }, options);
  return { cache, made };
}

describe('RateLimitPayloadCache', () => {
  it('makes a value once per payload, whatever its call id', () => {
    const { cache, made } = counting();
    expect(cache.get(payload(1, 'user=alice'))).toBe('value of user=alice');
    expect(cache.get(payload(2, 'user=alice'))).toBe('value of user=alice');
    expect(cache.get(payload(0xffffffff, 'user=alice'))).toBe('value of user=alice');
    expect(cache.get(payload(3, 'user=bob'))).toBe('value of user=bob');
    expect(made).toEqual(['user=alice', 'user=bob']);
    expect(cache.size).toBe(2);
  });

  it('tells apart payloads that differ in any byte outside the id, or in length', () => {
    const { cache, made } = counting();
    const a = payload(1, 'user=alice');
    const flagged = a.slice();
    flagged[1] = 7;
    for (const p of [a, flagged, payload(1, 'user=alicf'), payload(1, 'user=alice\0'), payload(1, 'user=alic')]) cache.get(p);
    expect(made).toHaveLength(5);
  });

  it('keeps its own copy: a caller reusing the buffer does not change what is cached', () => {
    const { cache, made } = counting();
    const b = payload(1, 'user=alice');
    cache.get(b);
    b.set(payload(1, 'user=carol'));
    expect(cache.get(b)).toBe('value of user=carol');
    expect(cache.get(payload(1, 'user=alice'))).toBe('value of user=alice');
    expect(made).toEqual(['user=alice', 'user=carol']);
  });

  it('holds at most its slots, a newer payload replacing the one in its slot', () => {
    const { cache, made } = counting({ slots: 1 });
    for (const user of ['a', 'b', 'a']) cache.get(payload(1, `user=${user}`));
    expect(made).toEqual(['user=a', 'user=b', 'user=a']);
    expect(cache.size).toBe(1);
    const wide = counting({ slots: 8 });
    for (let i = 0; i < 1000; i++) expect(wide.cache.get(payload(i, `user=${i}`))).toBe(`value of user=${i}`);
    expect(wide.cache.size).toBeLessThanOrEqual(8);
  });

  it('never keeps a payload longer than maxPayloadBytes', () => {
    const { cache, made } = counting({ maxPayloadBytes: 20 });
    const long = 'user=' + 'x'.repeat(20);
    cache.get(payload(1, long));
    cache.get(payload(2, long));
    expect(made).toEqual([long, long]);
    expect(cache.size).toBe(0);
  });

  it('keeps nothing for a payload its maker refuses, and asks again next time', () => {
    const { cache, made } = counting();
    expect(() => cache.get(payload(1, 'bad one'))).toThrow(/refused bad one/);
    expect(() => cache.get(payload(1, 'bad one'))).toThrow(/refused bad one/);
    expect(cache.size).toBe(0);
    expect(cache.get(payload(1, 'good'))).toBe('value of good');
    expect(made).toEqual(['good']);
  });

  it('refuses a slot count that is not a power of two', () => {
    expect(() => new RateLimitPayloadCache(() => 0, { slots: 12 })).toThrow(/power of two/);
    expect(() => new RateLimitPayloadCache(() => 0, { slots: 0 })).toThrow(/power of two/);
  });
});
