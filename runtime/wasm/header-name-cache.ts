/**
 * Header names, short values and property paths read from guest memory, interned: plugins name the same few headers
 * and attributes on every request and mostly set literal values, and comparing the guest's bytes with a cached copy
 * costs less than slicing a new string out of memory (a native Buffer latin1Slice call, 60–140 ns even for two bytes)
 * and lower-casing (or UTF-8 decoding and normalizing) it. Bounded: a slot per hash, one table per kind.
 */
import { lowerAscii } from './header-map-codec.js';

/** Guest memory as the hostcalls hold it (GuestMemory): bytes, and a DataView over the same bytes for word reads. */
export interface GuestBytes {
  readonly buf: Buffer;
  readonly view: DataView;
}

const SLOTS = 256;
/** Longer strings are rare enough (or unique enough) to slice every time. */
const MAX_CACHED = 64;
const WORDS = MAX_CACHED / 4;

/**
 * One kind's cache: per slot the guest's raw bytes (zero-padded, compared four at a time, which measured 2–3× faster
 * than a byte loop against the cached string) and the string they stand for.
 */
class Table {
  readonly keys = new Int32Array(SLOTS * WORDS);
  readonly keyBytes = new Uint8Array(this.keys.buffer);
  readonly lengths = new Int32Array(SLOTS).fill(-1);
  readonly strings: string[] = new Array<string>(SLOTS).fill('');

  /** The cached string for `[ptr, ptr+len)` (1 ≤ len ≤ MAX_CACHED), or undefined with the slot to fill in `missSlot`. */
  find(mem: GuestBytes, ptr: number, len: number): string | undefined {
    const buf = mem.buf;
    // The slot comes from the length and three bytes, not all of them: the comparison reads every byte anyway, and a
    // collision only costs a slice.
    const h = Math.imul(len, 0x9e3779b1) ^ (buf[ptr]! << 16) ^ (buf[ptr + (len >> 1)]! << 8) ^ buf[ptr + len - 1]!;
    const slot = (h ^ (h >>> 13)) & (SLOTS - 1);
    if (this.lengths[slot] === len) {
      const view = mem.view;
      const keys = this.keys;
      const base = slot * WORDS;
      const words = len >> 2;
      let k = 0;
      while (k < words && view.getInt32(ptr + 4 * k, true) === keys[base + k]) k++;
      if (k === words) {
        const keyBytes = this.keyBytes;
        const b = base * 4;
        let i = words * 4;
        while (i < len && buf[ptr + i] === keyBytes[b + i]) i++;
        if (i === len) return this.strings[slot];
      }
    }
    missSlot = slot;
    return undefined;
  }

  /** Caches `s` for the bytes `[ptr, ptr+len)` in the slot find() just missed. */
  store(buf: Buffer, ptr: number, len: number, s: string): void {
    const slot = missSlot;
    const b = slot * WORDS * 4;
    const keyBytes = this.keyBytes;
    keyBytes.fill(0, b, b + MAX_CACHED);
    for (let i = 0; i < len; i++) keyBytes[b + i] = buf[ptr + i]!;
    this.lengths[slot] = len;
    this.strings[slot] = s;
  }
}

/** The slot of the latest miss, where its string goes. */
let missSlot = 0;

const names = new Table();
const values = new Table();
const paths = new Table();
const functionNames = new Table();

/**
 * The lower-cased (ASCII only) latin1 string of `[ptr, ptr+len)`; the caller checked the bounds. Cached by the raw
 * bytes, so a name a guest sends in two spellings takes two slots and answers the same string from both.
 */
export function headerNameAt(mem: GuestBytes, ptr: number, len: number): string {
  if (len === 0) return '';
  if (len > MAX_CACHED) return lowerAscii(mem.buf.latin1Slice(ptr, ptr + len));
  const hit = names.find(mem, ptr, len);
  if (hit !== undefined) return hit;
  const name = lowerAscii(mem.buf.latin1Slice(ptr, ptr + len));
  names.store(mem.buf, ptr, len, name);
  return name;
}

/** The latin1 string of `[ptr, ptr+len)` (a header value: one char per byte); the caller checked the bounds. */
export function headerValueAt(mem: GuestBytes, ptr: number, len: number): string {
  if (len === 0) return '';
  if (len > MAX_CACHED) return mem.buf.latin1Slice(ptr, ptr + len);
  const hit = values.find(mem, ptr, len);
  if (hit !== undefined) return hit;
  const value = mem.buf.latin1Slice(ptr, ptr + len);
  values.store(mem.buf, ptr, len, value);
  return value;
}

/**
 * The property path at `[ptr, ptr+len)` as `read` makes it from those bytes (decoded and normalized), cached by the
 * bytes: a plugin asks for the same few attributes on every request. The caller checked the bounds.
 */
export function propertyPathAt(mem: GuestBytes, ptr: number, len: number, read: (ptr: number, len: number) => string): string {
  return readThrough(paths, mem, ptr, len, read);
}

/** A foreign function's name at `[ptr, ptr+len)` as `read` decodes it, cached by the bytes like property paths. */
export function functionNameAt(mem: GuestBytes, ptr: number, len: number, read: (ptr: number, len: number) => string): string {
  return readThrough(functionNames, mem, ptr, len, read);
}

function readThrough(table: Table, mem: GuestBytes, ptr: number, len: number, read: (ptr: number, len: number) => string): string {
  if (len === 0 || len > MAX_CACHED) return read(ptr, len);
  const hit = table.find(mem, ptr, len);
  if (hit !== undefined) return hit;
  const s = read(ptr, len);
  table.store(mem.buf, ptr, len, s);
  return s;
}
