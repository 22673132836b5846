/**
 * Plugin access to shared rate limits and breakers: registers `weft.ratelimit.*` and `weft.breaker.*` in the
 * ForeignFunctionRegistry. Payloads are JSON in UTF-8 both ways (simple to build and parse from AssemblyScript):
 *
 * weft.ratelimit.should_rate_limit
 *   in:  {"id"?: any, "domain": "api", "descriptors": [{"entries": [{"key": "user", "value": "alice"}], "hitsAddend"?: n}], "hitsAddend"?: n}
 *   out: {"id", "context", "code": "OK"|"OVER_LIMIT", "statuses": [{"code", "remaining", "resetMs", "retryAfterMs", "source", "name"?}], "headers": {...}}
 * weft.breaker.acquire   in: {"id"?, "name": "reviews"}  out: {"id", "context", "allowed", "state", "probe", "permit": "<token>"}
 * weft.breaker.record    in: {"permit": "<token>", "success": true}  out: {"ok": true}
 * weft.breaker.state     in: {"name": "reviews"}  out: {"state": "CLOSED"|"OPEN"|"HALF_OPEN"}
 *
 * A decision the host can make at once (local-mode limits, a CLOSED or OPEN breaker) is the call's return
 * value. Otherwise the call returns an empty buffer and the answer arrives through
 * proxy_on_foreign_function(root_context_id, function_id, size); "id" (echoed) and "context" (the calling
 * context id) let the root context route it to the waiting stream. Bad input answers {"error", "code"} at once.
 *
 * weft.ratelimit.should_rate_limit also takes a compact binary payload (first byte 0x01, rate-limit-binary.ts), which
 * the SDK sends; it is answered in the same binary form, errors included. JSON callers see no difference.
 */
import type { ForeignCallContext, ForeignFunctionRegistry } from '../wasm/foreign-function.js';
import type { BreakerPermit, SharedBreakers } from './circuit-breaker.js';
import {
  BadBinaryPayload, binaryRequestId, decodeRateLimitBinary, encodeRateLimitAnswer, encodeRateLimitError, RATE_LIMIT_BINARY_TAG,
} from './rate-limit-binary.js';
import { RateLimitPayloadCache } from './rate-limit-payload-cache.js';
import type { PreparedRateLimitRequest, RateLimiter, RateLimitRequest, RateLimitResponse } from './rate-limiter.js';

export const FOREIGN_FUNCTION_NAMES = {
  shouldRateLimit: 'weft.ratelimit.should_rate_limit',
  breakerAcquire: 'weft.breaker.acquire',
  breakerRecord: 'weft.breaker.record',
  breakerState: 'weft.breaker.state',
} as const;

const MAX_PAYLOAD_BYTES = 64 * 1024;
const MAX_DESCRIPTORS = 64;
const MAX_ENTRIES = 32;
/** Permits a plugin never reports are forgotten after this; the breaker's own probe timeout frees the slot. */
const PERMIT_TTL_MS = 5 * 60_000;
const MAX_PERMITS = 100_000;

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });
const json = (value: unknown): Uint8Array => encoder.encode(JSON.stringify(value));

class BadPayload extends Error {}

function parse(args: Uint8Array): Record<string, unknown> {
  if (args.length > MAX_PAYLOAD_BYTES) throw new BadPayload(`payload of ${args.length} bytes exceeds ${MAX_PAYLOAD_BYTES}`);
  let value: unknown;
  try {
    value = JSON.parse(decoder.decode(args));
  } catch (err) {
    throw new BadPayload(`payload is not UTF-8 JSON: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new BadPayload('payload must be a JSON object');
  return value as Record<string, unknown>;
}

const isString = (v: unknown): v is string => typeof v === 'string';
const optionalCount = (v: unknown, what: string): number | undefined => {
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new BadPayload(`${what} must be a non-negative integer`);
  return v;
};

export function parseRateLimitPayload(p: Record<string, unknown>): RateLimitRequest {
  if (!isString(p.domain) || p.domain === '') throw new BadPayload('"domain" must be a non-empty string');
  if (!Array.isArray(p.descriptors) || p.descriptors.length === 0 || p.descriptors.length > MAX_DESCRIPTORS) {
    throw new BadPayload(`"descriptors" must be an array of 1..${MAX_DESCRIPTORS} descriptors`);
  }
  const descriptors = p.descriptors.map((d: unknown, i) => {
    const entries = (d as { entries?: unknown } | null)?.entries;
    if (!Array.isArray(entries) || entries.length === 0 || entries.length > MAX_ENTRIES) throw new BadPayload(`descriptor ${i}: "entries" must be an array of 1..${MAX_ENTRIES}`);
    const parsed = entries.map((e: unknown) => {
      const { key, value } = (e ?? {}) as { key?: unknown; value?: unknown };
      if (!isString(key) || key === '' || !isString(value)) throw new BadPayload(`descriptor ${i}: every entry needs string "key" and "value"`);
      return { key, value };
    });
    const hitsAddend = optionalCount((d as { hitsAddend?: unknown }).hitsAddend, `descriptor ${i} hitsAddend`);
    return { entries: parsed, ...(hitsAddend === undefined ? {} : { hitsAddend }) };
  });
  const hitsAddend = optionalCount(p.hitsAddend, 'hitsAddend');
  return { domain: p.domain, descriptors, ...(hitsAddend === undefined ? {} : { hitsAddend }) };
}

/** A number as JSON.stringify writes it (non-finite → null). */
const jsonNumber = (v: number): string => (Number.isFinite(v) ? String(v) : 'null');
/** `id` as JSON: the SDK sends a number, anything else goes through JSON.stringify. */
const jsonId = (id: unknown): string => (typeof id === 'number' ? jsonNumber(id) : (JSON.stringify(id ?? null) ?? 'null'));
/** Decision sources are a fixed set of plain words: no escaping needed. */
const quotedSources = new Map<string, string>();
const quotedSource = (s: string): string => {
  let q = quotedSources.get(s);
  if (q === undefined) quotedSources.set(s, (q = JSON.stringify(s)));
  return q;
};

/**
 * The answer as JSON.stringify of {id, context, code, statuses, headers} would write it, assembled from parts: it is
 * built on every limited request, and the generic stringify of the nested objects was most of the host's share.
 */
function rateLimitAnswer(id: unknown, ctx: ForeignCallContext, r: RateLimitResponse): Uint8Array {
  let out = `{"id":${jsonId(id)},"context":${jsonNumber(ctx.contextId)},"code":"${r.overallCode}","statuses":[`;
  for (let i = 0; i < r.statuses.length; i++) {
    const s = r.statuses[i]!;
    out += `${i === 0 ? '' : ','}{"code":"${s.code}","remaining":${jsonNumber(s.remaining)},"resetMs":${jsonNumber(Math.ceil(s.resetMs))},"retryAfterMs":${jsonNumber(Math.ceil(s.retryAfterMs))},"source":${quotedSource(s.source)}`;
    out += s.rule === undefined ? '}' : `,"name":${JSON.stringify(s.rule.name)}}`;
  }
  return encoder.encode(`${out}],"headers":${JSON.stringify(r.headers)}}`);
}

/**
 * Runs `fn`; bad input becomes an immediate error payload rather than a hostcall failure, and a deferred
 * answer that fails still names its call ("id"), so only that call fails in the plugin.
 */
function guarded(fn: (p: Record<string, unknown>, ctx: ForeignCallContext) => Uint8Array | Promise<Uint8Array>) {
  return (args: Uint8Array, ctx: ForeignCallContext): Uint8Array | Promise<Uint8Array> => {
    try {
      const p = parse(args);
      const out = fn(p, ctx);
      if (!(out instanceof Promise)) return out;
      return out.catch((err: unknown) =>
        json({ id: p.id ?? null, context: ctx.contextId, error: err instanceof Error ? err.message : String(err), code: 'WEFT_ERR_INTERNAL' }),
      );
    } catch (err) {
      if (err instanceof BadPayload) return json({ error: err.message, code: 'WEFT_ERR_BAD_REQUEST' });
      throw err;
    }
  };
}

/**
 * The binary form, read in place (`len` bytes at `at` of `b`, the guest's memory during the call): bad input is
 * answered as a binary error naming the call (when its id could be read). Requests are decoded and prepared once per
 * distinct payload (`prepared`).
 */
function shouldRateLimitBinary(
  limiter: RateLimiter,
  prepared: RateLimitPayloadCache<PreparedRateLimitRequest>,
  b: Uint8Array,
  at: number,
  len: number,
  contextId: number,
): Uint8Array | Promise<Uint8Array> {
  const id = binaryRequestId(b, at, len);
  try {
    if (len > MAX_PAYLOAD_BYTES) throw new BadBinaryPayload(`payload of ${len} bytes exceeds ${MAX_PAYLOAD_BYTES}`);
    const decided = limiter.decidePrepared(prepared.getAt(b, at, len), true);
    if (!(decided instanceof Promise)) return encodeRateLimitAnswer(id, contextId, decided, false);
    return decided.then(
      (r) => encodeRateLimitAnswer(id, contextId, r, true),
      (err: unknown) => encodeRateLimitError(id, contextId, 'WEFT_ERR_INTERNAL', err instanceof Error ? err.message : String(err)),
    );
  } catch (err) {
    if (err instanceof BadBinaryPayload) return encodeRateLimitError(id, contextId, 'WEFT_ERR_BAD_REQUEST', err.message);
    throw err;
  }
}

export interface SharedStateForeignFunctions {
  readonly ids: Record<keyof typeof FOREIGN_FUNCTION_NAMES, number>;
  /** Permits handed out and not yet recorded (for tests and the admin view). */
  outstandingPermits(): number;
}

export function registerSharedStateForeignFunctions(
  registry: ForeignFunctionRegistry,
  state: { rateLimiter: RateLimiter; breakers: SharedBreakers },
): SharedStateForeignFunctions {
  const permits = new Map<string, { permit: BreakerPermit; expires: number }>();
  let seq = 0;
  const remember = (permit: BreakerPermit): string => {
    const now = Date.now();
    if (permits.size >= MAX_PERMITS) for (const [k, v] of permits) if (v.expires <= now || permits.size >= MAX_PERMITS) permits.delete(k);
    const token = `${++seq}`;
    permits.set(token, { permit, expires: now + PERMIT_TTL_MS });
    return token;
  };
  const permitAnswer = (id: unknown, ctx: ForeignCallContext, permit: BreakerPermit): Uint8Array =>
    json({ id: id ?? null, context: ctx.contextId, allowed: permit.allowed, state: permit.state, probe: permit.probe, permit: permit.allowed ? remember(permit) : null });

  const limiter = state.rateLimiter;
  const prepared = new RateLimitPayloadCache((b) => limiter.prepare(decodeRateLimitBinary(b, MAX_DESCRIPTORS, MAX_ENTRIES).request));
  const shouldRateLimitJson = guarded((p, ctx) => {
    const decided = state.rateLimiter.decide(parseRateLimitPayload(p));
    return decided instanceof Promise ? decided.then((r) => rateLimitAnswer(p.id, ctx, r)) : rateLimitAnswer(p.id, ctx, decided);
  });
  const ids = {
    // Read in place: the binary form is on every limited request, and a copy of its payload per call is not needed.
    shouldRateLimit: registry.registerInPlace(FOREIGN_FUNCTION_NAMES.shouldRateLimit, (b, at, len, pluginName, contextId) =>
      len > 0 && b[at] === RATE_LIMIT_BINARY_TAG
        ? shouldRateLimitBinary(limiter, prepared, b, at, len, contextId)
        : shouldRateLimitJson(b.slice(at, at + len), { pluginName, contextId }),
    ),
    breakerAcquire: registry.register(
      FOREIGN_FUNCTION_NAMES.breakerAcquire,
      guarded((p, ctx) => {
        if (!isString(p.name) || p.name === '') throw new BadPayload('"name" must be a non-empty string');
        const permit = state.breakers.acquire(p.name);
        return permit instanceof Promise ? permit.then((x) => permitAnswer(p.id, ctx, x)) : permitAnswer(p.id, ctx, permit);
      }),
    ),
    breakerRecord: registry.register(
      FOREIGN_FUNCTION_NAMES.breakerRecord,
      guarded((p) => {
        if (!isString(p.permit) || typeof p.success !== 'boolean') throw new BadPayload('"permit" (string) and "success" (boolean) are required');
        const held = permits.get(p.permit);
        if (held === undefined) throw new BadPayload(`unknown or already recorded permit "${p.permit.slice(0, 32)}"`);
        permits.delete(p.permit);
        state.breakers.record(held.permit, p.success);
        return json({ ok: true });
      }),
    ),
    breakerState: registry.register(
      FOREIGN_FUNCTION_NAMES.breakerState,
      guarded((p) => {
        if (!isString(p.name) || p.name === '') throw new BadPayload('"name" must be a non-empty string');
        return json({ state: state.breakers.state(p.name) });
      }),
    ),
  };
  return { ids, outstandingPermits: () => permits.size };
}
