// The guest side of the ABI's allocation hand-off: the host asks proxy_on_memory_allocate for raw (non-GC) memory,
// writes a result there and reports (ptr, len) through two out-words; the SDK copies it into a managed buffer and
// frees the raw block at once, so nothing the host wrote is ever reachable by the garbage collector.

/** Two u32 out-words reused by every host call that returns (ptr, len); hostcalls never nest, so one pair is enough. */
const OUT: usize = memory.data(16);

/** Allocator the host calls (exported as proxy_on_memory_allocate and malloc). Returns 0 when out of memory. */
export function allocateForHost(size: usize): usize {
  if (size == 0) return 0;
  return heap.alloc(size);
}

// @ts-ignore: decorator
@inline export function outPtr(): usize { return OUT; }
// @ts-ignore: decorator
@inline export function outLen(): usize { return OUT + 4; }
// @ts-ignore: decorator
@inline export function outWord(): usize { return OUT + 8; }

/** Takes the (ptr, len) result of the last host call as a managed ArrayBuffer and frees the raw block. */
export function takeOutBytes(): ArrayBuffer {
  const ptr = load<usize>(OUT);
  const len = load<u32>(OUT + 4);
  const buf = new ArrayBuffer(<i32>len);
  if (len > 0 && ptr != 0) {
    memory.copy(changetype<usize>(buf), ptr, len);
    heap.free(ptr);
  }
  return buf;
}

/** Takes the (ptr, len) result as UTF-8 text (invalid sequences become U+FFFD) and frees the raw block. */
export function takeOutString(): string {
  const ptr = load<usize>(OUT);
  const len = load<u32>(OUT + 4);
  if (len == 0 || ptr == 0) return "";
  const s = decodeUtf8(ptr, len);
  heap.free(ptr);
  return s;
}

/** Resets the out-words so a failed call never leaves a stale pointer behind. */
export function clearOut(): void {
  store<u64>(OUT, 0);
}

/**
 * Strict UTF-8 decoding (WHATWG): every maximal invalid subsequence becomes one U+FFFD. AssemblyScript's own decoder
 * does not validate, so header bytes that are not UTF-8 (HTTP allows obs-text) would turn into arbitrary code units.
 */
export function decodeUtf8(ptr: usize, len: usize): string {
  // Fast path: pure ASCII (header values, paths, principals), widened in the same pass that checks it, into a string
  // of exactly its size. A non-ASCII byte leaves that string to the collector and starts over below.
  const ascii = changetype<string>(__new(len << 1, idof<string>()));
  const dst = changetype<usize>(ascii);
  let k: usize = 0;
  for (; k < len; k++) {
    const b = load<u8>(ptr + k);
    if (b >= 0x80) break;
    store<u16>(dst + (k << 1), <u16>b);
  }
  if (k == len) return ascii;
  const out = new Array<u16>();
  let i: usize = 0;
  while (i < len) {
    const b0 = <u32>load<u8>(ptr + i);
    if (b0 < 0x80) { out.push(<u16>b0); i++; continue; }
    let need = 0;
    let cp: u32 = 0;
    let lower: u32 = 0x80;
    let upper: u32 = 0xbf;
    if (b0 >= 0xc2 && b0 <= 0xdf) { need = 1; cp = b0 & 0x1f; }
    else if (b0 >= 0xe0 && b0 <= 0xef) {
      need = 2; cp = b0 & 0x0f;
      if (b0 == 0xe0) lower = 0xa0;
      if (b0 == 0xed) upper = 0x9f;
    } else if (b0 >= 0xf0 && b0 <= 0xf4) {
      need = 3; cp = b0 & 0x07;
      if (b0 == 0xf0) lower = 0x90;
      if (b0 == 0xf4) upper = 0x8f;
    } else { out.push(0xfffd); i++; continue; }
    let j: usize = i + 1;
    let ok = true;
    for (let k = 0; k < need; k++) {
      if (j >= len) { ok = false; break; }
      const b = <u32>load<u8>(ptr + j);
      if (b < lower || b > upper) { ok = false; break; }
      lower = 0x80; upper = 0xbf;
      cp = (cp << 6) | (b & 0x3f);
      j++;
    }
    if (!ok) { out.push(0xfffd); i = j > i + 1 ? j : i + 1; continue; }
    if (cp >= 0x10000) {
      const v = cp - 0x10000;
      out.push(<u16>(0xd800 | (v >> 10)));
      out.push(<u16>(0xdc00 | (v & 0x3ff)));
    } else out.push(<u16>cp);
    i = j;
  }
  return String.UTF16.decodeUnsafe(out.dataStart, <usize>out.length << 1);
}

// Scratch areas for hostcall arguments: every hostcall copies its arguments before returning, so a string is encoded
// into raw memory the SDK reuses instead of a fresh ArrayBuffer per call (the hot path then allocates nothing).
// Slot 0 holds a name or key, slot 1 a value; each starts in static data and moves to a larger raw block when needed.
const SCRATCH_STATIC: i32 = 256;
let scratchPtr0: usize = memory.data(SCRATCH_STATIC);
let scratchCap0: usize = <usize>SCRATCH_STATIC;
let scratchPtr1: usize = memory.data(SCRATCH_STATIC);
let scratchCap1: usize = <usize>SCRATCH_STATIC;
let scratchLen0: usize = 0;
let scratchLen1: usize = 0;

function scratchRoom(slot: i32, need: usize): usize {
  if (slot == 0) {
    if (need > scratchCap0) {
      // The static block is never freed; a grown one is replaced by the next growth.
      if (scratchCap0 > <usize>SCRATCH_STATIC) heap.free(scratchPtr0);
      scratchCap0 = need < 1024 ? 1024 : need;
      scratchPtr0 = heap.alloc(scratchCap0);
    }
    return scratchPtr0;
  }
  if (need > scratchCap1) {
    if (scratchCap1 > <usize>SCRATCH_STATIC) heap.free(scratchPtr1);
    scratchCap1 = need < 1024 ? 1024 : need;
    scratchPtr1 = heap.alloc(scratchCap1);
  }
  return scratchPtr1;
}

/**
 * Encodes `s` as UTF-8 into scratch `slot` (0 or 1) and returns its address; scratchLen(slot) is its length. Valid
 * until the next scratchUtf8 on the same slot: pass it straight to a hostcall.
 */
export function scratchUtf8(s: string, slot: i32): usize {
  const n = <usize>s.length;
  const src = changetype<usize>(s);
  // ASCII (header names, tokens, most values): one byte per code unit, no second pass.
  let ptr = scratchRoom(slot, n);
  let i: usize = 0;
  for (; i < n; i++) {
    const c = load<u16>(src + (i << 1));
    if (c >= 0x80) break;
    store<u8>(ptr + i, <u8>c);
  }
  let len = n;
  if (i < n) {
    ptr = scratchRoom(slot, <usize>String.UTF8.byteLength(s, false));
    len = String.UTF8.encodeUnsafe(src, <i32>n, ptr, false, String.UTF8.ErrorMode.REPLACE);
  }
  if (slot == 0) scratchLen0 = len;
  else scratchLen1 = len;
  return ptr;
}

// @ts-ignore: decorator
@inline export function scratchLen(slot: i32): usize {
  return slot == 0 ? scratchLen0 : scratchLen1;
}

/** Frees the (ptr, len) result of the last host call without reading it. */
export function dropOut(): void {
  const ptr = load<usize>(OUT);
  if (ptr != 0) heap.free(ptr);
}

/** UTF-8 bytes of `s` (unpaired surrogates become U+FFFD, never an abort). */
export function utf8(s: string): ArrayBuffer {
  return String.UTF8.encode(s, false, String.UTF8.ErrorMode.REPLACE);
}

/** ASCII-only lower-casing (header names, tokens): avoids String#toLowerCase and its Unicode tables. */
export function asciiLower(s: string): string {
  let i = 0;
  const n = s.length;
  while (i < n) {
    const c = s.charCodeAt(i);
    if (c >= 0x41 && c <= 0x5a) break;
    i++;
  }
  if (i == n) return s;
  const out = changetype<string>(__new(<usize>n << 1, idof<string>()));
  const src = changetype<usize>(s);
  const dst = changetype<usize>(out);
  for (let j = 0; j < n; j++) {
    let c = load<u16>(src + (<usize>j << 1));
    if (c >= 0x41 && c <= 0x5a) c += 0x20;
    store<u16>(dst + (<usize>j << 1), c);
  }
  return out;
}
