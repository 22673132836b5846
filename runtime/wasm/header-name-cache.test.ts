// Interned header names, values and property paths: the same bytes give the same string (names lower-cased, in any
// case; paths as the reader makes them), and a colliding or longer one is never mistaken for a cached one.
import { describe, expect, it } from 'vitest';
import { type GuestBytes, headerNameAt, headerValueAt, propertyPathAt } from './header-name-cache.js';
import { normalizePropertyPath } from './properties.js';

/** `text` at offset 2 of a buffer that is not at offset 0 of its ArrayBuffer (as pooled Buffers are not). */
function memory(text: string, encoding: BufferEncoding): GuestBytes {
  const backing = Buffer.alloc(text.length * 3 + 16);
  const buf = backing.subarray(3);
  buf.write(`..${text}..`, encoding);
  return { buf, view: new DataView(buf.buffer, buf.byteOffset, buf.byteLength) };
}

function at(text: string): string {
  return headerNameAt(memory(text, 'latin1'), 2, text.length);
}

describe('headerNameAt', () => {
  it('lower-cases ASCII only and returns the interned string for the same name in any case', () => {
    const a = at('X-Wasm-Filter');
    expect(a).toBe('x-wasm-filter');
    expect(at('x-wasm-filter')).toBe(a);
    expect(at('X-WASM-FILTER')).toBe(a);
    expect(at('X-\xc4')).toBe('x-\xc4');
    // Same length, first, middle and last byte (so the same slot): a differing word or tail byte is a different name.
    expect(at('x-wasn-filter')).toBe('x-wasn-filter');
    expect(at('x-wasm-filter')).toBe('x-wasm-filter');
    expect(at('x-wasm-fiLter')).toBe('x-wasm-filter');
    expect(at('x-wasm-filtxr')).toBe('x-wasm-filtxr');
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
  const value = (text: string): string => headerValueAt(memory(text, 'latin1'), 2, text.length);

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

describe('propertyPathAt', () => {
  let reads = 0;
  const path = (text: string): string => {
    const mem = memory(text, 'utf8');
    return propertyPathAt(mem, 2, Buffer.byteLength(text), (p, l) => {
      reads++;
      return normalizePropertyPath(mem.buf.toString('utf8', p, p + l));
    });
  };

  it('reads a path once and answers its normalized form from the cache while the bytes are the same', () => {
    reads = 0;
    expect(path('source\0principal')).toBe('source.principal');
    expect(path('source\0principal')).toBe('source.principal');
    expect(reads).toBe(1);
    expect(path('source\0principal\0')).toBe('source.principal');
    expect(path('source.principal')).toBe('source.principal');
    expect(path('request\0headers\0x-é')).toBe('request.headers.x-é');
    expect(path('')).toBe('');
  });

  it('never answers a different path, whatever shares its slot, and reads paths past the cache limit each time', () => {
    const paths = Array.from({ length: 2000 }, (_, i) => `p\0${i}`);
    for (const p of paths) expect(path(p)).toBe(p.replace('\0', '.'));
    for (const p of paths.reverse()) expect(path(p)).toBe(p.replace('\0', '.'));
    reads = 0;
    const long = `request\0headers\0x-${'a'.repeat(80)}`;
    expect(path(long)).toBe(long.replaceAll('\0', '.'));
    expect(path(long)).toBe(long.replaceAll('\0', '.'));
    expect(reads).toBe(2);
  });
});
