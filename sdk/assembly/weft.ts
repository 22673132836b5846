// Typed wrappers for weft's host services: the shared rate limiter (`weft.ratelimit.should_rate_limit`) and circuit
// breakers (`weft.breaker.*`), reached through proxy_call_foreign_function with JSON payloads. A decision the host can
// make at once is returned at once; otherwise the call is pending and the answer goes to the calling context's
// onRateLimitResult / onBreakerPermit / onCounterResult (routed by the "id" the SDK puts in the payload), with that context effective.
// Outside weft (e.g. in Envoy) the functions do not exist: the call answers NotFound and the plugin decides.
import { WasmResult } from "./abi-enums";
import { foreignFunctionArguments } from "./buffers";
import { Context } from "./context";
import { callForeignFunction, callForeignFunctionText } from "./foreign-function";
import { jsonQuote } from "./json";
import { utf8 } from "./memory";
import { decodeBytes } from "./result";
import { installForeignHooks } from "./dispatch-hooks";
import { BreakerPermit, CounterResult, RATE_LIMIT_BINARY_TAG, RateLimitResult, payloadObject } from "./weft-results";

export const RATE_LIMIT_FUNCTION = "weft.ratelimit.should_rate_limit";
export const BREAKER_ACQUIRE_FUNCTION = "weft.breaker.acquire";
export const BREAKER_RECORD_FUNCTION = "weft.breaker.record";
export const BREAKER_STATE_FUNCTION = "weft.breaker.state";
export const COUNTER_ADD_FUNCTION = "weft.counter.add";

const KIND_RATE_LIMIT: u8 = 1;
const KIND_BREAKER: u8 = 2;
const KIND_COUNTER: u8 = 3;

class Pending {
  constructor(public handler: Context, public kind: u8) {}
}

const pending = new Map<u32, Pending>();
let nextId: u32 = 1;

/** One descriptor: ordered key/value entries (e.g. [["remote_address", ip], ["path", "/api"]]). */
export class RateLimitDescriptor {
  readonly keys: Array<string> = new Array<string>();
  readonly values: Array<string> = new Array<string>();
  /** Hits this request counts against the descriptor; -1 uses the request's hitsAddend (default 1), 0 only checks. */
  hitsAddend: i32 = -1;

  entry(key: string, value: string): RateLimitDescriptor {
    this.keys.push(key);
    this.values.push(value);
    return this;
  }

  toJson(): string {
    let s = "{\"entries\":[";
    for (let i = 0; i < this.keys.length; i++) {
      if (i > 0) s += ",";
      s += "{\"key\":" + jsonQuote(this.keys[i]) + ",\"value\":" + jsonQuote(this.values[i]) + "}";
    }
    s += "]";
    if (this.hitsAddend >= 0) s += ",\"hitsAddend\":" + this.hitsAddend.toString();
    return s + "}";
  }
}

/** A foreign call's state right after it was made. */
export class PendingCall<T> {
  constructor(
    /** The host's status; not Ok means no answer will come (NotFound: not running in weft). */
    public readonly status: WasmResult,
    /** Routes the later answer; 0 when answered at once or failed. */
    public readonly token: u32,
    /** The answer when the host decided at once, else null. */
    public readonly result: T | null,
  ) {}

  get pending(): bool {
    return this.status == WasmResult.Ok && this.result === null;
  }
}

function call<T>(name: string, id: u32, payload: string, handler: Context, kind: u8, parse: (text: string) => T): PendingCall<T> {
  const r = callForeignFunctionText(name, payload);
  if (!r.ok) return new PendingCall<T>(r.status, 0, null);
  if (r.value.length > 0) return new PendingCall<T>(WasmResult.Ok, 0, parse(r.value));
  installForeignHooks(deliverForeignResult, forgetForeignCalls);
  pending.set(id, new Pending(handler, kind));
  return new PendingCall<T>(WasmResult.Ok, id, null);
}

function parseRateLimit(text: string): RateLimitResult {
  return RateLimitResult.fromText(text);
}

function parsePermit(text: string): BreakerPermit {
  const obj = payloadObject(text);
  return obj === null ? BreakerPermit.failure("the host answered no decision") : BreakerPermit.fromJson(obj);
}

/** The payload's fixed middle for the last domain and hitsAddend: a plugin asks about one domain on every request. */
let headDomain = "";
let headHits: u32 = 0;
let head = "";

/**
 * Asks the shared limiter about `descriptors` in `domain` (the limits themselves are host configuration).
 *
 * @example
 *   const d = new RateLimitDescriptor().entry("user", user);
 *   const c = shouldRateLimit("api", [d], this);
 *   if (c.pending) return HeadersAction.StopIteration;      // answer comes to onRateLimitResult
 *   if (c.result !== null && c.result!.overLimit) this.sendLocalResponse(429, "slow down\n");
 */
export function shouldRateLimit(domain: string, descriptors: Array<RateLimitDescriptor>, handler: Context, hitsAddend: u32 = 1): PendingCall<RateLimitResult> {
  const id = nextId++;
  if (head.length == 0 || domain != headDomain || hitsAddend != headHits) {
    headDomain = domain;
    headHits = hitsAddend;
    head = ",\"domain\":" + jsonQuote(domain) + ",\"hitsAddend\":" + hitsAddend.toString() + ",\"descriptors\":[";
  }
  let payload = "{\"id\":" + id.toString() + head;
  for (let i = 0; i < descriptors.length; i++) {
    if (i > 0) payload += ",";
    payload += descriptors[i].toJson();
  }
  payload += "]}";
  return call<RateLimitResult>(RATE_LIMIT_FUNCTION, id, payload, handler, KIND_RATE_LIMIT, parseRateLimit);
}

/** Asks breaker `name` whether a request may go; report the outcome of an allowed one with breakerRecord. */
export function breakerAcquire(name: string, handler: Context): PendingCall<BreakerPermit> {
  const id = nextId++;
  const payload = "{\"id\":" + id.toString() + ",\"name\":" + jsonQuote(name) + "}";
  return call<BreakerPermit>(BREAKER_ACQUIRE_FUNCTION, id, payload, handler, KIND_BREAKER, parsePermit);
}

/** Reports the outcome of a permitted request. Ok, or the host's status / BadArgument when it refused the permit. */
export function breakerRecord(permit: BreakerPermit, success: bool): WasmResult {
  if (permit.permit.length == 0) return WasmResult.BadArgument;
  const r = callForeignFunction(BREAKER_RECORD_FUNCTION, utf8("{\"permit\":" + jsonQuote(permit.permit) + ",\"success\":" + (success ? "true" : "false") + "}"));
  if (!r.ok) return r.status;
  const obj = payloadObject(decodeBytes(r.value));
  return obj !== null && obj.getBool("ok") ? WasmResult.Ok : WasmResult.BadArgument;
}

/** The breaker's state (CLOSED, OPEN, HALF_OPEN), or "" when the host cannot tell. */
export function breakerState(name: string): string {
  const r = callForeignFunction(BREAKER_STATE_FUNCTION, utf8("{\"name\":" + jsonQuote(name) + "}"));
  if (!r.ok) return "";
  const obj = payloadObject(decodeBytes(r.value));
  if (obj === null) return "";
  const s = obj.getString("state");
  return s === null ? "" : s;
}

function parseCounter(text: string): CounterResult {
  const obj = payloadObject(text);
  return obj === null ? CounterResult.failure("the host answered no count") : CounterResult.fromJson(obj);
}

/**
 * Adds `delta` to the cluster-wide counter `name` in a window of `windowMs` (1 s .. 1 day), shared by every node
 * through weft's state backend. The answer always comes later, to `handler.onCounterResult(token, result)`; 0 reads.
 *
 * @example
 *   const c = sharedCounterAdd("logins:" + user, 1, 60000, this);
 *   if (c.pending) return HeadersAction.StopIteration;   // onCounterResult decides, then continueRequest()
 */
export function sharedCounterAdd(name: string, delta: u32, windowMs: u32, handler: Context): PendingCall<CounterResult> {
  const id = nextId++;
  const payload = "{\"id\":" + id.toString() + ",\"name\":" + jsonQuote(name) + ",\"delta\":" + delta.toString() + ",\"windowMs\":" + windowMs.toString() + "}";
  return call<CounterResult>(COUNTER_ADD_FUNCTION, id, payload, handler, KIND_COUNTER, parseCounter);
}

/** Reserves the id of a call made outside this module (RateLimitCall): ids stay unique across both forms. */
export function nextForeignCallId(): u32 {
  return nextId++;
}

/** Routes the later answer of rate-limit call `id` (JSON or binary) to handler.onRateLimitResult. */
export function awaitRateLimitAnswer(id: u32, handler: Context): void {
  installForeignHooks(deliverForeignResult, forgetForeignCalls);
  pending.set(id, new Pending(handler, KIND_RATE_LIMIT));
}

/** Foreign calls waiting for an answer (diagnostics and tests). */
export function pendingForeignCalls(): i32 {
  return pending.size;
}

/**
 * Dispatches proxy_on_foreign_function. The host answers a failed service with an empty payload that names no call;
 * then every waiting call of that kind gets a failure, so no stream stays paused on an answer that will never come.
 */
export function deliverForeignResult(functionId: u32, size: u32): void {
  const r = foreignFunctionArguments.readAll();
  // A binary rate-limit answer (rate-limit-call.ts) names its call in bytes 4..8.
  if (r.ok && r.value.byteLength >= 12 && load<u8>(changetype<usize>(r.value)) == RATE_LIMIT_BINARY_TAG) {
    const at = changetype<usize>(r.value);
    const bid = load<u32>(at + 4);
    if (!pending.has(bid)) return;
    const bp = pending.get(bid);
    pending.delete(bid);
    if (bp.handler.activate() != WasmResult.Ok) return;
    if (bp.kind == KIND_RATE_LIMIT) bp.handler.onRateLimitResult(bid, RateLimitResult.fromBinary(at, <usize>r.value.byteLength));
    else deliver(bid, bp, null, "the host answered in an unexpected form");
    return;
  }
  const text = r.ok ? decodeBytes(r.value) : "";
  const obj = payloadObject(text);
  if (obj === null || !obj.has("id") || !obj.get("id")!.isNumber) {
    const ids = pending.keys();
    for (let i = 0; i < ids.length; i++) {
      const p = pending.get(ids[i]);
      pending.delete(ids[i]);
      deliver(ids[i], p, null, "the host service failed to answer");
    }
    return;
  }
  const id = <u32>obj.getNumber("id");
  if (!pending.has(id)) return;
  const p = pending.get(id);
  pending.delete(id);
  deliver(id, p, obj, "");
}

import { JsonObject } from "./json";

function deliver(id: u32, p: Pending, obj: JsonObject | null, error: string): void {
  if (p.handler.activate() != WasmResult.Ok) return;
  if (p.kind == KIND_RATE_LIMIT) p.handler.onRateLimitResult(id, obj === null ? RateLimitResult.failure(error) : RateLimitResult.fromJson(obj));
  else if (p.kind == KIND_BREAKER) p.handler.onBreakerPermit(id, obj === null ? BreakerPermit.failure(error) : BreakerPermit.fromJson(obj));
  else p.handler.onCounterResult(id, obj === null ? CounterResult.failure(error) : CounterResult.fromJson(obj));
}

/** Drops the foreign calls of a context that is going away. */
export function forgetForeignCalls(ctx: Context): void {
  // Runs for every deleted context once any call was deferred: most have nothing waiting.
  if (pending.size == 0) return;
  const ids = pending.keys();
  for (let i = 0; i < ids.length; i++) if (pending.get(ids[i]).handler === ctx) pending.delete(ids[i]);
}
