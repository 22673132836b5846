// Interned header names and values: the same bytes give the same string (names lower-cased, in any case), and a colliding or longer one
// is never mistaken for a cached one.
import { describe, expect, it } from 'vitest';
import { headerNameAt, headerValueAt } from './header-name-cache.js';

function at(text: string): string {
  const buf = Buffer.from(`..${text}..`, 'latin1');
  return headerNameAt(buf, 2, text.length);
}

describe('headerNameAt', () => {
  it('lower-cases ASCII only and returns the interned string for the same name in any case', () => {
    const a = at('X-Wasm-Filter');
    expect(a).toBe('x-wasm-filter');
    expect(at('x-wasm-filter')).toBe(a);
    expect(at('X-WASM-FILTER')).toBe(a);
    expect(at('X-\xc4')).toBe('x-\xc4');
    expect(at('')).toBe('');
  });

  it('never answers a different name, whatever shares its slot, and slices names past the cache limit', () => {
    const names = Array.from({ length: 2000 }, (_, i) => `h${i}`);
    for (const n of names) expect(at(n)).toBe(n);
    for (const n of names.reverse()) expect(at(n.toUpperCase())).toBe(n);
    const long = `x-${'a'.repeat(100)}`;
    expect(at(long.toUpperCase())).toBe(long);
  });
});

describe('headerValueAt', () => {
  const value = (text: string): string => headerValueAt(Buffer.from(`..${text}..`, 'latin1'), 2, text.length);

  it('keeps the bytes as they are (no case folding) and answers the interned string for the same bytes', () => {
    const a = value('Weft-Wasm');
    expect(a).toBe('Weft-Wasm');
    expect(value('Weft-Wasm')).toBe(a);
    expect(value('weft-wasm')).toBe('weft-wasm');
    expect(value('\xff\x00a')).toBe('\xff\x00a');
    expect(value('')).toBe('');
  });

  it('never answers a different value, whatever shares its slot, and slices values past the cache limit', () => {
    const values = Array.from({ length: 2000 }, (_, i) => `v${i}`);
    for (const v of values) expect(value(v)).toBe(v);
    for (const v of values.reverse()) expect(value(v)).toBe(v);
    const long = 'x'.repeat(300);
    expect(value(long)).toBe(long);
  });
});
