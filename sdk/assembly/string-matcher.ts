// A list of Istio match patterns (see string-match.ts) compiled once, at configure time, into exact, prefix, suffix,
// presence and glob tests: matchesAny's answer without its per-call pattern scans and substrings, for a range of a
// string (a path before its query, the namespace inside a SPIFFE id) without cutting it out first, or for ASCII bytes
// the host wrote (a HostBlock) without decoding them.

import { globRange } from "./string-match";

// @ts-ignore: decorator
@inline const EXACT: u8 = 0;
// @ts-ignore: decorator
@inline const PREFIX: u8 = 1;
// @ts-ignore: decorator
@inline const SUFFIX: u8 = 2;
// @ts-ignore: decorator
@inline const ANY: u8 = 3;
// @ts-ignore: decorator
@inline const GLOB: u8 = 4;

/**
 * Whether the characters at `base` from `start` are `lit`: T is u16 for a string's code units, u8 for ASCII bytes (an
 * ASCII byte equals its code unit, and a literal with any other character cannot equal ASCII bytes).
 */
function sameAt<T>(base: usize, start: i32, lit: string): bool {
  if (sizeof<T>() == 2) return memory.compare(base + (<usize>start << 1), changetype<usize>(lit), <usize>lit.length << 1) == 0;
  const at = base + <usize>start;
  for (let i = 0; i < lit.length; i++) if (<u32>load<u8>(at + <usize>i) != <u32>lit.charCodeAt(i)) return false;
  return true;
}

/**
 * Patterns compiled for matching on every request; `matches(v)` answers exactly what `matchesAny(patterns, v)` does.
 *
 * @example
 *   const paths = new StringMatcher(["/api/*", "/health"]);   // once, in onConfigure
 *   const p = requestHeaders.get(":path")!;
 *   const q = p.indexOf("?");
 *   paths.matchesRange(p, 0, q < 0 ? p.length : q);            // per request: the path without its query, no substring
 */
export class StringMatcher {
  private kinds: StaticArray<u8>;
  /** The literal to compare (the pattern without its `*`), or the whole pattern for GLOB. */
  private literals: StaticArray<string>;

  constructor(patterns: Array<string>) {
    const n = patterns.length;
    this.kinds = new StaticArray<u8>(n);
    this.literals = new StaticArray<string>(n);
    for (let i = 0; i < n; i++) {
      const p = patterns[i];
      const len = p.length;
      const first = p.indexOf("*");
      const last = p.lastIndexOf("*");
      let kind = GLOB;
      let lit = p;
      if (len == 1 && first == 0) kind = ANY;
      else if (first < 0) kind = EXACT;
      else if (first == last && first == len - 1) { kind = PREFIX; lit = p.substring(0, len - 1); }
      else if (first == last && first == 0) { kind = SUFFIX; lit = p.substring(1); }
      unchecked((this.kinds[i] = kind));
      unchecked((this.literals[i] = lit));
    }
  }

  /** How many patterns there are (none never match). */
  get length(): i32 {
    return this.kinds.length;
  }

  /** True when any pattern matches `value`. */
  matches(value: string): bool {
    return this.matchesRange(value, 0, value.length);
  }

  /** True when any pattern matches `value.substring(start, end)` (0 <= start <= end <= value.length). */
  matchesRange(value: string, start: i32, end: i32): bool {
    return this.matchAt<u16>(changetype<usize>(value), start, end);
  }

  /**
   * True when any pattern matches the ASCII bytes at `ptr` from `start` to `end` (a value read in place, see HostBlock),
   * as it would match them decoded. Only for ASCII: decode anything else first (its invalid bytes become U+FFFD).
   */
  matchesAscii(ptr: usize, start: i32, end: i32): bool {
    return this.matchAt<u8>(ptr, start, end);
  }

  private matchAt<T>(base: usize, start: i32, end: i32): bool {
    const len = end - start;
    for (let i = 0; i < this.kinds.length; i++) {
      const kind = unchecked(this.kinds[i]);
      const lit = unchecked(this.literals[i]);
      const n = lit.length;
      if (kind == ANY) return true;
      if (kind == EXACT) {
        if (n == len && sameAt<T>(base, start, lit)) return true;
      } else if (kind == PREFIX) {
        if (n <= len && sameAt<T>(base, start, lit)) return true;
      } else if (kind == SUFFIX) {
        if (n <= len && sameAt<T>(base, end - n, lit)) return true;
      } else if (globRange<T>(lit, 0, base, start, end)) return true;
    }
    return false;
  }
}
