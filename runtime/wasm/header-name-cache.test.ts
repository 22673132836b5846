// Interned header names: the same bytes give the same lower-cased string, any case, and a colliding or longer name
// is never mistaken for a cached one.
import { describe, expect, it } from 'vitest';
import { headerNameAt } from './header-name-cache.js';

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
