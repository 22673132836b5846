// Whether raw bytes (a value the host wrote, see HostBlock) are ASCII: such a value equals its own decoding, so it can be
// matched and echoed as bytes; anything else is decoded first (its invalid sequences become U+FFFD, as get() does).

const HIGH_BITS: u64 = 0x8080808080808080;

/**
 * True when the `len` bytes at `ptr` are all below 0x80, tested eight at a time (Wasm loads need no alignment).
 *
 * @example
 *   if (headerValueInto(requestHeaders, ORIGIN, block) && isAsciiBytes(block.ptr, block.len)) matcher.matchesAscii(block.ptr, 0, <i32>block.len);
 */
export function isAsciiBytes(ptr: usize, len: usize): bool {
  let i: usize = 0;
  for (; i + 8 <= len; i += 8) if ((load<u64>(ptr + i) & HIGH_BITS) != 0) return false;
  for (; i < len; i++) if (load<u8>(ptr + i) >= 0x80) return false;
  return true;
}
