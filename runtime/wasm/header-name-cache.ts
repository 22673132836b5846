/**
 * Lower-cased header names read from guest memory, interned: plugins name the same few headers on every request, and
 * comparing the guest's bytes with a cached string costs less than slicing a new string out of memory (Buffer
 * latin1Slice) and lower-casing it, which was a sixth of a header-editing filter's host time. Bounded: a slot per hash.
 */
import { lowerAscii } from './header-map-codec.js';

const SLOTS = 256;
/** Longer names are rare enough to slice every time. */
const MAX_CACHED = 64;
const cache: (string | undefined)[] = new Array<string | undefined>(SLOTS);

/** ASCII lower-casing of one byte. */
function lower(b: number): number {
  return b >= 0x41 && b <= 0x5a ? b | 0x20 : b;
}

/** The lower-cased (ASCII only) latin1 string of `u8[ptr, ptr+len)`; the caller checked the bounds. */
export function headerNameAt(buf: Buffer, ptr: number, len: number): string {
  if (len === 0) return '';
  if (len > MAX_CACHED) return lowerAscii(buf.latin1Slice(ptr, ptr + len));
  let h = len;
  for (let i = 0; i < len; i++) h = (Math.imul(h, 31) + lower(buf[ptr + i]!)) | 0;
  const slot = h & (SLOTS - 1);
  const hit = cache[slot];
  if (hit !== undefined && hit.length === len) {
    let same = true;
    for (let i = 0; i < len && same; i++) same = hit.charCodeAt(i) === lower(buf[ptr + i]!);
    if (same) return hit;
  }
  const name = lowerAscii(buf.latin1Slice(ptr, ptr + len));
  cache[slot] = name;
  return name;
}
