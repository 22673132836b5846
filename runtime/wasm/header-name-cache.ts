/**
 * Header names, short values and property paths read from guest memory, interned: plugins name the same few headers
 * and attributes on every request and mostly set literal values, and comparing the guest's bytes with a cached string
 * costs less than slicing a new string out of memory (a native Buffer latin1Slice call, 60–140 ns even for two bytes)
 * and lower-casing (or UTF-8 decoding and normalizing) it. Bounded: a slot per hash, one table per kind.
 */
import { lowerAscii } from './header-map-codec.js';

const SLOTS = 256;
/** Longer strings are rare enough (or unique enough) to slice every time. */
const MAX_CACHED = 64;
const names: string[] = new Array<string>(SLOTS).fill('');
const values: string[] = new Array<string>(SLOTS).fill('');
/** Property paths: the guest's bytes (one char per byte) and, in the same slot, what they resolve to. */
const pathBytes: string[] = new Array<string>(SLOTS).fill('');
const pathValues: string[] = new Array<string>(SLOTS).fill('');

/** ASCII lower-casing of a byte, by table. */
const LOWER = new Uint8Array(256);
for (let b = 0; b < 256; b++) LOWER[b] = b >= 0x41 && b <= 0x5a ? b | 0x20 : b;
/** Identity, so one loop serves both tables. */
const SAME = new Uint8Array(256);
for (let b = 0; b < 256; b++) SAME[b] = b;

/** The string for `buf[ptr, ptr+len)` with each byte mapped through `map`, from `table` when it is there. */
function interned(table: string[], map: Uint8Array, buf: Buffer, ptr: number, len: number): string | undefined {
  // The slot comes from the length and three bytes, not all of them: the comparison below reads every byte anyway, and
  // a collision only costs a slice.
  const h = Math.imul(len, 0x9e3779b1) ^ (map[buf[ptr]!]! << 16) ^ (map[buf[ptr + (len >> 1)]!]! << 8) ^ map[buf[ptr + len - 1]!]!;
  const slot = (h ^ (h >>> 13)) & (SLOTS - 1);
  const hit = table[slot]!;
  if (hit.length === len) {
    let i = 0;
    while (i < len && hit.charCodeAt(i) === map[buf[ptr + i]!]) i++;
    if (i === len) {
      lastHit = slot;
      return hit;
    }
  }
  lastSlot = slot;
  return undefined;
}

/** The slot of the latest miss (where its string goes) and of the latest hit. */
let lastSlot = 0;
let lastHit = 0;

/** The lower-cased (ASCII only) latin1 string of `buf[ptr, ptr+len)`; the caller checked the bounds. */
export function headerNameAt(buf: Buffer, ptr: number, len: number): string {
  if (len === 0) return '';
  if (len > MAX_CACHED) return lowerAscii(buf.latin1Slice(ptr, ptr + len));
  const hit = interned(names, LOWER, buf, ptr, len);
  if (hit !== undefined) return hit;
  const name = lowerAscii(buf.latin1Slice(ptr, ptr + len));
  names[lastSlot] = name;
  return name;
}

/** The latin1 string of `buf[ptr, ptr+len)` (a header value: one char per byte); the caller checked the bounds. */
export function headerValueAt(buf: Buffer, ptr: number, len: number): string {
  if (len === 0) return '';
  if (len > MAX_CACHED) return buf.latin1Slice(ptr, ptr + len);
  const hit = interned(values, SAME, buf, ptr, len);
  if (hit !== undefined) return hit;
  const value = buf.latin1Slice(ptr, ptr + len);
  values[lastSlot] = value;
  return value;
}

/**
 * The property path at `buf[ptr, ptr+len)` as `read` makes it from those bytes (decoded and normalized), cached by the
 * bytes: a plugin asks for the same few attributes on every request. The caller checked the bounds.
 */
export function propertyPathAt(buf: Buffer, ptr: number, len: number, read: (ptr: number, len: number) => string): string {
  if (len === 0 || len > MAX_CACHED) return read(ptr, len);
  const hit = interned(pathBytes, SAME, buf, ptr, len);
  if (hit !== undefined) return pathValues[lastHit]!;
  const slot = lastSlot;
  const path = read(ptr, len);
  pathBytes[slot] = buf.latin1Slice(ptr, ptr + len);
  pathValues[slot] = path;
  return path;
}
