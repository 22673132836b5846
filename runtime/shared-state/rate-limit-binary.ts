/**
 * The compact binary form of `weft.ratelimit.should_rate_limit` (request and answer), which the SDK uses instead of
 * JSON: no text to build or parse on either side of the call. A payload whose first byte is RATE_LIMIT_BINARY_TAG is
 * this format and is answered in it; anything else is the JSON format (a JSON text never starts with 0x01). The layout
 * is documented in runtime/shared-state/README.md ("Binary rate-limit payload"); all integers are little-endian.
 */
import { policyWindowS, remainingOf, resetS, retryAfterS, sfName, type HeaderSource } from './rate-limit-headers.js';
import { DECISION_SOURCE_INDEX, type RateLimitRequest, type RateLimitResponse } from './rate-limiter.js';

export const RATE_LIMIT_BINARY_TAG = 0x01;
/** Answer codes (byte 1 of an answer). */
export const BINARY_CODE = { ok: 0, overLimit: 1, error: 2 } as const;
/** A descriptor's hitsAddend field meaning "the request's" (the JSON form leaves the key out). */
export const HITS_UNSET = 0xffffffff;

const REQUEST_HEAD = 12;
const ANSWER_HEAD = 12;
const STATUS_SIZE = 28;

export class BadBinaryPayload extends Error {}

/** The request of a binary payload and the id it carries (echoed in the answer). */
export interface BinaryRateLimitRequest {
  readonly id: number;
  readonly request: RateLimitRequest;
}

const utf8 = new TextDecoder('utf-8');
const encoder = new TextEncoder();

/**
 * Strings that repeat on every call (domains, descriptor keys) by their bytes: a slot per (length, first and last
 * byte), checked byte by byte, so a hit costs a short loop instead of a decode. Values are decoded every time.
 */
const INTERN_SLOTS = 128;
const internBytes: (Uint8Array | undefined)[] = new Array<Uint8Array | undefined>(INTERN_SLOTS).fill(undefined);
const internStrings: string[] = new Array<string>(INTERN_SLOTS).fill('');

function interned(b: Uint8Array, at: number, len: number): string {
  if (len > 48) return text(b, at, len);
  const slot = (len * 31 + b[at]! * 7 + b[at + len - 1]!) & (INTERN_SLOTS - 1);
  const have = internBytes[slot];
  if (have !== undefined && have.length === len) {
    let i = 0;
    while (i < len && have[i] === b[at + i]) i++;
    if (i === len) return internStrings[slot]!;
  }
  const s = text(b, at, len);
  internBytes[slot] = b.slice(at, at + len);
  internStrings[slot] = s;
  return s;
}

/** UTF-8 text of `len` bytes at `at`; invalid sequences become U+FFFD (as the SDK's own decoder and TextDecoder do). */
function text(b: Uint8Array, at: number, len: number): string {
  if (len <= 24) {
    // Short ASCII (user ids, addresses, paths): a char loop beats any native slice at this size.
    let s = '';
    for (let i = 0; i < len; i++) {
      const c = b[at + i]!;
      if (c >= 0x80) return utf8.decode(b.subarray(at, at + len));
      s += String.fromCharCode(c);
    }
    return s;
  }
  return utf8.decode(b.subarray(at, at + len));
}

const u16 = (b: Uint8Array, at: number): number => b[at]! | (b[at + 1]! << 8);
const u32 = (b: Uint8Array, at: number): number => (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0;

function truncated(b: Uint8Array, at: number, n: number, what: string): BadBinaryPayload {
  return new BadBinaryPayload(`binary payload ends inside ${what} (offset ${at}, ${n} bytes needed, ${b.length - at} left)`);
}

/** Parses a binary request; throws BadBinaryPayload with what is wrong (the caller answers it as an error). */
export function decodeRateLimitBinary(b: Uint8Array, maxDescriptors: number, maxEntries: number): BinaryRateLimitRequest {
  const end = b.length;
  if (end < REQUEST_HEAD + 2) throw new BadBinaryPayload(`binary payload of ${end} bytes is shorter than its ${REQUEST_HEAD + 2}-byte head`);
  if (b[0] !== RATE_LIMIT_BINARY_TAG) throw new BadBinaryPayload(`binary payload starts with 0x${b[0]!.toString(16)}, not 0x01`);
  if (b[1] !== 0) throw new BadBinaryPayload(`binary payload flags 0x${b[1]!.toString(16)} are not supported (must be 0)`);
  const count = u16(b, 2);
  const id = u32(b, 4);
  const hits = u32(b, 8);
  if (count === 0 || count > maxDescriptors) throw new BadBinaryPayload(`descriptor count ${count} is outside 1..${maxDescriptors}`);
  const domainLen = u16(b, REQUEST_HEAD);
  let at = REQUEST_HEAD + 2;
  if (at + domainLen > end) throw truncated(b, at, domainLen, 'the domain');
  if (domainLen === 0) throw new BadBinaryPayload('the domain must be non-empty');
  const domain = interned(b, at, domainLen);
  at += domainLen;
  const descriptors: { entries: { key: string; value: string }[]; hitsAddend?: number }[] = [];
  for (let d = 0; d < count; d++) {
    if (at + 6 > end) throw truncated(b, at, 6, `descriptor ${d}'s head`);
    const dHits = u32(b, at);
    const entryCount = u16(b, at + 4);
    at += 6;
    if (entryCount === 0 || entryCount > maxEntries) throw new BadBinaryPayload(`descriptor ${d}: entry count ${entryCount} is outside 1..${maxEntries}`);
    const entries: { key: string; value: string }[] = [];
    for (let e = 0; e < entryCount; e++) {
      if (at + 2 > end) throw truncated(b, at, 2, `descriptor ${d} entry ${e}'s key length`);
      const keyLen = u16(b, at);
      at += 2;
      if (at + keyLen + 2 > end) throw truncated(b, at, keyLen + 2, `descriptor ${d} entry ${e}'s key`);
      if (keyLen === 0) throw new BadBinaryPayload(`descriptor ${d} entry ${e}: the key must be non-empty`);
      const key = interned(b, at, keyLen);
      at += keyLen;
      const valueLen = u16(b, at);
      at += 2;
      if (at + valueLen > end) throw truncated(b, at, valueLen, `descriptor ${d} entry ${e}'s value`);
      entries.push({ key, value: text(b, at, valueLen) });
      at += valueLen;
    }
    descriptors.push(dHits === HITS_UNSET ? { entries } : { entries, hitsAddend: dHits });
  }
  if (at !== end) throw new BadBinaryPayload(`${end - at} bytes follow the last descriptor`);
  // 0 means "unset" as in the JSON form's default of 1 (Envoy: unset or 0 counts one hit).
  return { id, request: hits === 0 ? { domain, descriptors } : { domain, descriptors, hitsAddend: hits } };
}

/** The id of a binary payload (`len` bytes at `at` of `b`), when it is long enough to carry one (error answers still name their call). */
export function binaryRequestId(b: Uint8Array, at = 0, len = b.length - at): number {
  return len >= 8 ? u32(b, at + 4) : 0;
}

/** Rule names and header names/values as UTF-8, cached: the same few rules answer every call. */
const bytesOf = new Map<string, Uint8Array>();
function utf8Bytes(s: string): Uint8Array {
  let v = bytesOf.get(s);
  if (v === undefined) {
    v = encoder.encode(s);
    if (bytesOf.size >= 4096) bytesOf.clear();
    bytesOf.set(s, v);
  }
  return v;
}

/** Scratch for answers given at once: the host copies them into the guest before the next call. */
let scratch = new Uint8Array(1024);
let scratchView = new DataView(scratch.buffer);
/**
 * Views of the scratch's first n bytes by n: an answer is one of a few lengths (its numbers' digits vary), and making
 * a view (subarray) costs as much as encoding the answer.
 */
let scratchPrefixes: (Uint8Array | undefined)[] = [];
/** Where the answer being encoded goes (room() sets both). */
let out = scratch;
let outView = scratchView;

function room(n: number, copy: boolean): void {
  if (copy) {
    out = new Uint8Array(n);
    outView = new DataView(out.buffer);
    return;
  }
  if (n > scratch.length) {
    scratch = new Uint8Array(Math.max(n, scratch.length * 2));
    scratchView = new DataView(scratch.buffer);
    scratchPrefixes = [];
  }
  out = scratch;
  outView = scratchView;
}

/** The first `n` bytes of `b`: a kept view when `b` is the scratch. */
function prefix(b: Uint8Array, n: number): Uint8Array {
  if (b !== scratch) return b.subarray(0, n);
  let v = scratchPrefixes[n];
  if (v === undefined) scratchPrefixes[n] = v = b.subarray(0, n);
  return v;
}

function writeBytes(b: Uint8Array, at: number, bytes: Uint8Array): number {
  const n = bytes.length;
  // TypedArray#set is a native call that costs more than copying a few bytes by hand.
  if (n > 32) b.set(bytes, at);
  else for (let i = 0; i < n; i++) b[at + i] = bytes[i]!;
  return at + n;
}

/** Writes `s` at `at` and returns the end. */
function writeText(b: Uint8Array, at: number, s: string): number {
  const n = s.length;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x80) return writeBytes(b, at, encoder.encode(s));
    b[at + i] = c;
  }
  return at + n;
}

/** Decimal digits of a 31-bit integer `n` ≥ 0. */
function decimalDigits(n: number): number {
  if (n < 100_000) return n < 100 ? (n < 10 ? 1 : 2) : n < 1_000 ? 3 : n < 10_000 ? 4 : 5;
  return n < 10_000_000 ? (n < 1_000_000 ? 6 : 7) : n < 100_000_000 ? 8 : n < 1_000_000_000 ? 9 : 10;
}

/** `n` in decimal as String(n) writes it. */
function writeNumber(b: Uint8Array, at: number, n: number): number {
  if (n >= 0 && n <= 0x7fffffff && Number.isInteger(n)) {
    // 31-bit integers (every count and second here in practice): integer division, no float rounding.
    const digits = decimalDigits(n);
    for (let i = digits - 1, x = n; i >= 0; i--) {
      const q = (x / 10) | 0;
      b[at + i] = 0x30 + x - q * 10;
      x = q;
    }
    return at + digits;
  }
  return writeText(b, at, String(n));
}

const POLICY = encoder.encode('ratelimit-policy');
const RATELIMIT = encoder.encode('ratelimit');
const RETRY_AFTER = encoder.encode('retry-after');
const Q = encoder.encode(';q=');
const W = encoder.encode(';w=');
const R = encoder.encode(';r=');
const T = encoder.encode(';t=');
/** Upper bound of a header record: name, lengths, an sf-string and two numbers. */
const headerRoom = (name: Uint8Array): number => 3 + 16 + name.length + 2 * 3 + 2 * 22;

/** Starts a header record (u8 name length, u16 value length, name, value) at `at`; returns where the value goes. */
function headerStart(b: Uint8Array, at: number, name: Uint8Array): number {
  b[at] = name.length;
  return writeBytes(b, at + 3, name);
}

/** Completes the record started at `at` whose value runs from `valueAt` to `end`. */
function headerEnd(v: DataView, at: number, valueAt: number, end: number): number {
  v.setUint16(at + 1, end - valueAt, true);
  return end;
}

/**
 * Per policy, for one quota and window: its whole RateLimit-Policy record followed by the RateLimit record's head up to
 * `r=` (u8 name length, two bytes for the value length, `ratelimit`, `"name";r=`), written with one copy.
 */
interface PolicyRecords {
  readonly quota: number;
  readonly windowS: number;
  readonly bytes: Uint8Array;
  /** Where the RateLimit record starts in `bytes`. */
  readonly rateLimitAt: number;
}
const policyRecords = new Map<string, PolicyRecords>();

function recordsOf(source: HeaderSource): PolicyRecords {
  const windowS = policyWindowS(source);
  let r = policyRecords.get(source.policyName);
  if (r !== undefined && r.quota === source.quota && r.windowS === windowS) return r;
  const name = encoder.encode(sfName(source.policyName));
  const policy = new Uint8Array(3 + POLICY.length + name.length + 6 + 44);
  const pv = new DataView(policy.buffer);
  const valueAt = headerStart(policy, 0, POLICY);
  const end = writeNumber(policy, writeBytes(policy, writeNumber(policy, writeBytes(policy, writeBytes(policy, valueAt, name), Q), source.quota), W), windowS);
  headerEnd(pv, 0, valueAt, end);
  const bytes = new Uint8Array(end + 3 + RATELIMIT.length + name.length + R.length);
  bytes.set(policy.subarray(0, end));
  writeBytes(bytes, writeBytes(bytes, headerStart(bytes, end, RATELIMIT), name), R);
  r = { quota: source.quota, windowS, bytes, rateLimitAt: end };
  if (policyRecords.size >= 1024) policyRecords.clear();
  policyRecords.set(source.policyName, r);
  return r;
}

/** rateLimitHeaders(source) as header records, without the strings: the count, then the records; returns the end. */
function writeHeaders(b: Uint8Array, v: DataView, at: number, source: HeaderSource | undefined): number {
  v.setUint16(at, source === undefined ? 0 : source.overLimit ? 3 : 2, true);
  at += 2;
  if (source === undefined) return at;
  const records = recordsOf(source);
  const start = at + records.rateLimitAt;
  const valueAt = start + 3 + RATELIMIT.length;
  b.set(records.bytes, at);
  at = writeNumber(b, writeBytes(b, writeNumber(b, at + records.bytes.length, remainingOf(source)), T), resetS(source));
  at = headerEnd(v, start, valueAt, at);
  if (source.overLimit) {
    const retryAt = headerStart(b, at, RETRY_AFTER);
    at = headerEnd(v, at, retryAt, writeNumber(b, retryAt, retryAfterS(source)));
  }
  return at;
}

function writeHeaderStrings(b: Uint8Array, v: DataView, at: number, headers: Readonly<Record<string, string>>): number {
  const names = Object.keys(headers);
  v.setUint16(at, names.length, true);
  at += 2;
  for (const h of names) {
    const valueAt = headerStart(b, at, utf8Bytes(h));
    at = headerEnd(v, at, valueAt, writeText(b, valueAt, headers[h]!));
  }
  return at;
}

/**
 * The answer in binary form. `stable`: a fresh buffer (a deferred answer); otherwise a view of a scratch buffer valid
 * until the next call, which proxy_call_foreign_function copies into the guest at once.
 */
export function encodeRateLimitAnswer(id: number, contextId: number, r: RateLimitResponse, stable: boolean): Uint8Array {
  const source = r.headerSource;
  let size = ANSWER_HEAD + 2 + 3 * headerRoom(POLICY) + (source === undefined ? 0 : 2 * 3 * source.policyName.length);
  const statuses = r.statuses;
  const n = statuses.length;
  // Indexed loops: an array iterator here was an allocation per answer.
  for (let i = 0; i < n; i++) {
    const rule = statuses[i]!.rule;
    size += STATUS_SIZE + (rule === undefined ? 0 : 3 * rule.name.length);
  }
  // A response without headerSource (another limiter's) carries its headers as strings.
  const strings = source === undefined && Object.keys(r.headers).length > 0;
  if (strings) for (const [k, x] of Object.entries(r.headers)) size += 3 + 3 * (k.length + x.length);
  room(size, stable);
  const b = out;
  const v = outView;
  b[0] = RATE_LIMIT_BINARY_TAG;
  b[1] = r.overallCode === 'OK' ? BINARY_CODE.ok : BINARY_CODE.overLimit;
  v.setUint16(2, n, true);
  v.setUint32(4, id >>> 0, true);
  v.setUint32(8, contextId >>> 0, true);
  let at = ANSWER_HEAD;
  for (let i = 0; i < n; i++) {
    const s = statuses[i]!;
    const name = s.rule === undefined ? undefined : utf8Bytes(s.rule.name);
    b[at] = s.code === 'OK' ? 0 : 1;
    b[at + 1] = DECISION_SOURCE_INDEX[s.source];
    v.setUint16(at + 2, name?.length ?? 0, true);
    v.setFloat64(at + 4, s.remaining, true);
    v.setFloat64(at + 12, Math.ceil(s.resetMs), true);
    v.setFloat64(at + 20, Math.ceil(s.retryAfterMs), true);
    at += STATUS_SIZE;
    if (name !== undefined) at = writeBytes(b, at, name);
  }
  at = strings ? writeHeaderStrings(b, v, at, r.headers) : writeHeaders(b, v, at, source);
  return prefix(b, at);
}

/** An error answer: code 2, then the error code and the message, each a u16 length and UTF-8 bytes. */
export function encodeRateLimitError(id: number, contextId: number, code: string, message: string): Uint8Array {
  const c = encoder.encode(code);
  const m = encoder.encode(message.length > 1024 ? `${message.slice(0, 1021)}...` : message);
  const b = new Uint8Array(ANSWER_HEAD + 4 + c.length + m.length);
  const v = new DataView(b.buffer);
  b[0] = RATE_LIMIT_BINARY_TAG;
  b[1] = BINARY_CODE.error;
  v.setUint32(4, id >>> 0, true);
  v.setUint32(8, contextId >>> 0, true);
  v.setUint16(ANSWER_HEAD, c.length, true);
  b.set(c, ANSWER_HEAD + 2);
  v.setUint16(ANSWER_HEAD + 2 + c.length, m.length, true);
  b.set(m, ANSWER_HEAD + 4 + c.length);
  return b;
}
