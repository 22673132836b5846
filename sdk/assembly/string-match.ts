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
  return globMatch(pattern, 0, value, 0);
}

/** `*` matches any run without '/', `**` any run at all. Backtracking; patterns are short and configured. */
function globMatch(p: string, pi: i32, s: string, si: i32): bool {
  while (pi < p.length) {
    const c = p.charCodeAt(pi);
    if (c == 0x2a) {
      const deep = pi + 1 < p.length && p.charCodeAt(pi + 1) == 0x2a;
      const next = deep ? pi + 2 : pi + 1;
      if (next == p.length) return deep || s.indexOf("/", si) < 0;
      for (let k = si; k <= s.length; k++) {
        if (globMatch(p, next, s, k)) return true;
        if (k < s.length && !deep && s.charCodeAt(k) == 0x2f) return false;
      }
      return false;
    }
    if (si >= s.length || s.charCodeAt(si) != c) return false;
    pi++;
    si++;
  }
  return si == s.length;
}

/** True when any pattern matches (false for an empty list). */
export function matchesAny(patterns: Array<string>, value: string): bool {
  for (let i = 0; i < patterns.length; i++) if (istioMatch(patterns[i], value)) return true;
  return false;
}
