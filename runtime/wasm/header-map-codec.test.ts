import { describe, expect, it } from 'vitest';
import { type HeaderPairs, MAX_MAP_PAIRS, decodeHeaderMap, encodeHeaderMap, lowerAscii, serializedSize } from './header-map-codec.js';

describe('header map serialization', () => {
  it('matches the spec layout byte for byte ({"a":"1","b":"22"})', () => {
    const bytes = encodeHeaderMap([['a', '1'], ['b', '22']]);
    expect([...bytes]).toEqual([2, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0x61, 0, 0x31, 0, 0x62, 0, 0x32, 0x32, 0]);
    expect(serializedSize([['a', '1'], ['b', '22']])).toBe(bytes.length);
  });

  it('round-trips empty values, duplicate keys, pseudo-headers and every byte value', () => {
    const allBytes = String.fromCharCode(...Array.from({ length: 255 }, (_, i) => i + 1));
    const pairs: HeaderPairs = [[':authority', 'svc'], ['empty', ''], ['dup', 'one'], ['dup', 'two'], ['bytes', allBytes], ['utf8-as-bytes', Buffer.from('ü€', 'utf8').toString('latin1')]];
    expect(decodeHeaderMap(encodeHeaderMap(pairs))).toEqual(pairs);
    expect(decodeHeaderMap(encodeHeaderMap([]))).toEqual([]);
  });

  it('treats an empty buffer or a lone NUL as an empty map and lower-cases names from the guest', () => {
    expect(decodeHeaderMap(new Uint8Array(0))).toEqual([]);
    expect(decodeHeaderMap(Uint8Array.of(0))).toEqual([]);
    expect(decodeHeaderMap(encodeHeaderMap([['X-Mixed', 'V']]))).toEqual([['x-mixed', 'V']]);
    expect(lowerAscii('Ä-Header')).toBe('Ä-header'); // bytes above 0x7f are never touched
  });

  it('refuses truncated data, counts past the cap, and sizes that overrun the buffer', () => {
    const ok = encodeHeaderMap([['key', 'value']]);
    expect(decodeHeaderMap(ok.subarray(0, ok.length - 3))).toBeUndefined();
    expect(decodeHeaderMap(Uint8Array.of(1, 0))).toBeUndefined();
    const tooMany = Buffer.alloc(8);
    tooMany.writeUInt32LE(MAX_MAP_PAIRS + 1);
    expect(decodeHeaderMap(tooMany)).toBeUndefined();
    const lying = Buffer.from(ok);
    lying.writeUInt32LE(1000, 8);
    expect(decodeHeaderMap(lying)).toBeUndefined();
  });
});
