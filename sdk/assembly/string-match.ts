// String matching as Istio's AuthorizationPolicy writes it: exact, `prefix*`, `*suffix`, `*` (present), plus path
// globs where `*` matches within one segment and `**` across segments (e.g. `/api/*/users/**`).

/**
 * True when `value` matches `pattern`.
 * @example
 *   istioMatch("/admin/*", "/admin/users/1");        // true: a trailing * is a prefix match
 *   istioMatch("/api/*\/orders", "/api/v1/orders");    // true: a * inside matches one segment
 */
export function istioMatch(pattern: string, value: string): bool {
  const n = pattern.length;
  if (n == 1 && pattern.charCodeAt(0) == 0x2a) return true;
  const first = pattern.indexOf("*");
  if (first < 0) return pattern == value;
  const last = pattern.lastIndexOf("*");
  if (first == last) {
    if (first == n - 1) return value.startsWith(pattern.substring(0, n - 1));
    if (first == 0) return value.endsWith(pattern.substring(1));
  }
  return globRange<u16>(pattern, 0, changetype<usize>(value), 0, value.length);
}

// @ts-ignore: decorator
@inline function charAt<T>(base: usize, i: i32): u32 {
  return <u32>load<T>(base + (<usize>i << alignof<T>()));
}

/**
 * Whether `p` from `pi` matches the characters `[si, end)` at `base` (T: u16 for a string's code units, u8 for ASCII
 * bytes): `*` matches any run without '/', `**` any run at all. Backtracking; patterns are short and configured.
 */
export function globRange<T>(p: string, pi: i32, base: usize, si: i32, end: i32): bool {
  while (pi < p.length) {
    const c = <u32>p.charCodeAt(pi);
    if (c == 0x2a) {
      const deep = pi + 1 < p.length && p.charCodeAt(pi + 1) == 0x2a;
      const next = deep ? pi + 2 : pi + 1;
      if (next == p.length) {
        if (deep) return true;
        for (let k = si; k < end; k++) if (charAt<T>(base, k) == 0x2f) return false;
        return true;
      }
      for (let k = si; k <= end; k++) {
        if (globRange<T>(p, next, base, k, end)) return true;
        if (k < end && !deep && charAt<T>(base, k) == 0x2f) return false;
      }
      return false;
    }
    if (si >= end || charAt<T>(base, si) != c) return false;
    pi++;
    si++;
  }
  return si == end;
}

/** True when any pattern matches (false for an empty list). */
export function matchesAny(patterns: Array<string>, value: string): bool {
  for (let i = 0; i < patterns.length; i++) if (istioMatch(patterns[i], value)) return true;
  return false;
}
