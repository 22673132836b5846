// Decoded answers of weft's shared rate limiter and circuit breaker (foreign functions `weft.ratelimit.*` and
// `weft.breaker.*`, JSON payloads). A payload that is an error, empty or not JSON becomes an `error` result.
import { HeaderPair } from "./headers";
import { JsonObject, JsonReader, parseJson } from "./json";
import { decodeUtf8 } from "./memory";

export class RateLimitStatus {
  constructor(
    public readonly overLimit: bool,
    public readonly remaining: f64,
    public readonly resetMs: f64,
    public readonly retryAfterMs: f64,
    /** Where the decision came from: backend, lease, cache, unlimited, no-rule, fail-open, fail-closed. */
    public readonly source: string,
    /** The configured rule's name, "" when none matched. */
    public readonly name: string,
  ) {}
}

/** First byte of weft's binary rate-limit payloads and answers (rate-limit-call.ts; a JSON text never starts with it). */
export const RATE_LIMIT_BINARY_TAG: u8 = 0x01;
/** Decision sources in the binary answer's order (the host's DECISION_SOURCES). */
const BINARY_SOURCES: StaticArray<string> = ["backend", "lease", "cache", "unlimited", "no-rule", "fail-open", "fail-closed", "fail-local"];

const ANSWER_KEYS: StaticArray<string> = ["error", "code", "statuses", "headers"];
const STATUS_KEYS: StaticArray<string> = ["code", "remaining", "resetMs", "retryAfterMs", "source", "name"];

export class RateLimitResult {
  constructor(
    /** "OK", "OVER_LIMIT", or "" when `error` is set. */
    public readonly code: string,
    public readonly statuses: Array<RateLimitStatus>,
    /** RateLimit-Policy, RateLimit and (when over) Retry-After, ready to add to a response. */
    public readonly headers: Array<HeaderPair>,
    /** Non-empty when the host could not decide (bad request, limiter failure); the plugin picks open or closed. */
    public readonly error: string,
  ) {}

  get overLimit(): bool {
    return this.code == "OVER_LIMIT";
  }

  get failed(): bool {
    return this.error.length > 0;
  }

  static failure(error: string): RateLimitResult {
    return new RateLimitResult("", new Array<RateLimitStatus>(), new Array<HeaderPair>(), error);
  }

  static fromJson(obj: JsonObject): RateLimitResult {
    const err = obj.getString("error");
    if (err !== null) return RateLimitResult.failure(err);
    const code = obj.getString("code");
    if (code === null) return RateLimitResult.failure("answer without a code");
    const statuses = new Array<RateLimitStatus>();
    const arr = obj.getArray("statuses");
    if (arr !== null) {
      for (let i = 0; i < arr.length; i++) {
        const s = arr.at(i).asObject();
        if (s === null) continue;
        const sc = s.getString("code");
        const src = s.getString("source");
        const name = s.getString("name");
        statuses.push(new RateLimitStatus(sc !== null && sc == "OVER_LIMIT", s.getNumber("remaining"), s.getNumber("resetMs"), s.getNumber("retryAfterMs"),
          src === null ? "" : src, name === null ? "" : name));
      }
    }
    const headers = new Array<HeaderPair>();
    const h = obj.getObject("headers");
    if (h !== null) {
      for (let i = 0; i < h.keys.length; i++) {
        const v = h.getString(h.keys[i]);
        if (v !== null) headers.push(new HeaderPair(h.keys[i], v));
      }
    }
    return new RateLimitResult(code, statuses, headers, "");
  }

  /**
   * A binary answer (`len` bytes at `ptr`, layout in runtime/shared-state/README.md) as a result; a truncated or
   * inconsistent block is a failure, never a trap. The allocating form: the hot path reads the block in place
   * (RateLimitAnswer) and calls this only to reject, delay or deliver a deferred answer.
   */
  static fromBinary(ptr: usize, len: usize): RateLimitResult {
    const bad = "the host answered no decision";
    if (len < 12 || load<u8>(ptr) != RATE_LIMIT_BINARY_TAG) return RateLimitResult.failure(bad);
    const code = load<u8>(ptr + 1);
    const end = ptr + len;
    let at = ptr + 12;
    if (code == 2) {
      if (at + 2 > end) return RateLimitResult.failure(bad);
      const cl = <usize>load<u16>(at);
      at += 2 + cl;
      if (at + 2 > end) return RateLimitResult.failure(bad);
      const ml = <usize>load<u16>(at);
      if (at + 2 + ml > end) return RateLimitResult.failure(bad);
      return RateLimitResult.failure(decodeUtf8(at + 2, ml));
    }
    if (code > 1) return RateLimitResult.failure(bad);
    const n = <i32>load<u16>(ptr + 2);
    const statuses = new Array<RateLimitStatus>();
    for (let i = 0; i < n; i++) {
      if (at + 28 > end) return RateLimitResult.failure(bad);
      const src = <i32>load<u8>(at + 1);
      const nl = <usize>load<u16>(at + 2);
      if (at + 28 + nl > end) return RateLimitResult.failure(bad);
      statuses.push(new RateLimitStatus(load<u8>(at) == 1, load<f64>(at + 4), load<f64>(at + 12), load<f64>(at + 20),
        src < BINARY_SOURCES.length ? BINARY_SOURCES[src] : "", nl == 0 ? "" : decodeUtf8(at + 28, nl)));
      at += 28 + nl;
    }
    if (at + 2 > end) return RateLimitResult.failure(bad);
    const hn = <i32>load<u16>(at);
    at += 2;
    const headers = new Array<HeaderPair>();
    for (let i = 0; i < hn; i++) {
      if (at + 3 > end) return RateLimitResult.failure(bad);
      const kl = <usize>load<u8>(at);
      const vl = <usize>load<u16>(at + 1);
      if (at + 3 + kl + vl > end) return RateLimitResult.failure(bad);
      headers.push(new HeaderPair(decodeUtf8(at + 3, kl), decodeUtf8(at + 3 + kl, vl)));
      at += 3 + kl + vl;
    }
    return new RateLimitResult(code == 1 ? "OVER_LIMIT" : "OK", statuses, headers, "");
  }

  /**
   * The same result as fromJson(payloadObject(text)), read in one pass without building a JSON tree: the decision
   * is answered on every limited request, and the tree's objects and maps were most of the plugin's own time.
   */
  static fromText(text: string): RateLimitResult {
    if (text.length == 0) return RateLimitResult.failure("the host answered no decision");
    const r = new JsonReader(text);
    let err: string | null = null;
    let code: string | null = null;
    const statuses = new Array<RateLimitStatus>();
    const headers = new Array<HeaderPair>();
    if (!r.peekObject()) return RateLimitResult.failure("the host answered no decision");
    if (r.enter(0x7b)) do {
      const k = r.keyIndex(ANSWER_KEYS);
      if (k == -2) break;
      if (k == 0) err = r.readString();
      else if (k == 1) code = r.readString();
      else if (k == 2) {
        if (r.enter(0x5b)) do {
          if (!r.peekObject()) { r.skip(); continue; }
          let sc: string | null = null, src: string | null = null, name: string | null = null;
          let remaining: f64 = 0, resetMs: f64 = 0, retryAfterMs: f64 = 0;
          if (r.enter(0x7b)) do {
            const sk = r.keyIndex(STATUS_KEYS);
            if (sk == -2) break;
            if (sk == 0) sc = r.readString();
            else if (sk == 1) remaining = r.readNumber();
            else if (sk == 2) resetMs = r.readNumber();
            else if (sk == 3) retryAfterMs = r.readNumber();
            else if (sk == 4) src = r.readString();
            else if (sk == 5) name = r.readString();
            else r.skip();
          } while (r.more(0x7d));
          statuses.push(new RateLimitStatus(sc !== null && sc == "OVER_LIMIT", remaining, resetMs, retryAfterMs, src === null ? "" : src, name === null ? "" : name));
        } while (r.more(0x5d));
      } else if (k == 3) {
        if (r.enter(0x7b)) do {
          const hk = r.key();
          if (hk === null) break;
          const v = r.readString();
          if (v !== null) headers.push(new HeaderPair(hk, v));
        } while (r.more(0x7d));
      } else r.skip();
    } while (r.more(0x7d));
    if (!r.done()) return RateLimitResult.failure("the host answered no decision");
    if (err !== null) return RateLimitResult.failure(err);
    if (code === null) return RateLimitResult.failure("answer without a code");
    return new RateLimitResult(code, statuses, headers, "");
  }
}

export class BreakerPermit {
  constructor(
    public readonly allowed: bool,
    /** CLOSED, OPEN or HALF_OPEN. */
    public readonly state: string,
    /** This request is the half-open probe: report its outcome promptly. */
    public readonly probe: bool,
    /** Opaque token for breakerRecord; "" when not allowed. */
    public readonly permit: string,
    public readonly error: string,
  ) {}

  get failed(): bool {
    return this.error.length > 0;
  }

  static failure(error: string): BreakerPermit {
    return new BreakerPermit(false, "", false, "", error);
  }

  static fromJson(obj: JsonObject): BreakerPermit {
    const err = obj.getString("error");
    if (err !== null) return BreakerPermit.failure(err);
    const state = obj.getString("state");
    const permit = obj.getString("permit");
    return new BreakerPermit(obj.getBool("allowed"), state === null ? "" : state, obj.getBool("probe"), permit === null ? "" : permit, "");
  }
}

/** Parses a payload into an object, or null (empty, not JSON, not an object). */
export function payloadObject(text: string): JsonObject | null {
  if (text.length == 0) return null;
  const r = parseJson(text);
  if (!r.ok) return null;
  return r.value!.asObject();
}

/** A cluster-wide windowed counter after an add (weft.counter.add). */
export class CounterResult {
  constructor(
    /** The count in the current window, including this add. */
    public readonly value: f64,
    /** Milliseconds until the window restarts at zero. */
    public readonly resetMs: f64,
    public readonly error: string,
  ) {}

  get failed(): bool {
    return this.error.length > 0;
  }

  static failure(error: string): CounterResult {
    return new CounterResult(0, 0, error);
  }

  static fromJson(obj: JsonObject): CounterResult {
    const err = obj.getString("error");
    if (err !== null) return CounterResult.failure(err);
    if (!obj.has("value")) return CounterResult.failure("answer without a value");
    return new CounterResult(obj.getNumber("value"), obj.getNumber("resetMs"), "");
  }
}
