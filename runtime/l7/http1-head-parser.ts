/** Strict HTTP/1.x message-head parser (RFC 9112) for requests and responses: one pass over the bytes, anything ambiguous rejected rather than guessed; bodies are framed elsewhere. */

/** Node exposes latin1Slice on every Buffer (it backs toString('latin1')) but @types/node does not declare it. */
interface FastBuffer extends Buffer {
  latin1Slice(start: number, end: number): string;
}

/**
 * Why a head was rejected; `status` is what the client gets: 431 for size, 501 for a transfer coding weft does not
 * implement, 505 for the version, 400 otherwise (502 for an upstream's response head).
 */
export class HeadParseError {
  constructor(
    readonly status: 400 | 431 | 501 | 505 | 502,
    readonly reason: string,
  ) {}
}

export interface HeadLimits {
  maxHeadBytes: number;
  maxHeaders: number;
}

interface MessageHead {
  /** Flat [name, value, name, value, ...], names lower-cased, values trimmed; hop-by-hop headers included (the forwarder drops them). */
  headers: string[];
  /** 0 for HTTP/1.0, 1 for HTTP/1.1 and any later 1.x (RFC 9110 §2.5: processed as the highest minor version weft implements). */
  minor: number;
  /** -1 when absent. */
  contentLength: number;
  chunked: boolean;
  /** Connection: close (1.1) or no keep-alive (1.0). */
  close: boolean;
  /**
   * `Connection: upgrade` together with an `Upgrade` header on HTTP/1.1 (RFC 9110 §7.8: ignored on 1.0). A request
   * offering `h2c` is not an upgrade: weft never forwards it (RFC 9113 §3.1 deprecates it, and a proxy that passes it
   * lets a client tunnel requests past routing and authorization, "h2c smuggling"); the request goes on as HTTP/1.1.
   */
  upgrade: boolean;
  /** Bytes of the head including the blank line. */
  headBytes: number;
  /** Extra tokens of the Connection header (headers nominated as hop-by-hop, RFC 9110 §7.6.1). */
  connectionTokens: string[] | undefined;
  /**
   * The head's own bytes, when a forwarder that changes nothing else may send them as they came: HTTP/1.1, no field
   * it drops or re-creates (hop-by-hop fields, transfer-encoding, a repeated content-length; a request's traceparent,
   * which gets a new span, and a target not in origin-form). A `connection: keep-alive` line stays: it says on the
   * next hop what the proxy does there too. Undefined otherwise.
   */
  verbatim: Buffer | undefined;
  /** How many field lines the head has (what a reader of the undecoded lines, response-head-fields.ts, needs up front). */
  fieldCount: number;
}

export interface RequestHead extends MessageHead {
  method: string;
  target: string;
  host: string | undefined;
  expectContinue: boolean;
}

export interface ResponseHead extends MessageHead {
  status: number;
  reason: string;
  /** The first `grpc-status` field's value. */
  grpcStatus: string | undefined;
}

/** tchar of RFC 9110 §5.6.2: 1 where allowed. */
const TCHAR = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~") TCHAR[c.charCodeAt(0)] = 1;
for (let c = 0x30; c <= 0x39; c++) TCHAR[c] = 1;
for (let c = 0x41; c <= 0x5a; c++) TCHAR[c] = 2; // upper case: allowed, and the name needs lower-casing
for (let c = 0x61; c <= 0x7a; c++) TCHAR[c] = 1;

/** field-vchar / SP / HTAB / obs-text (RFC 9110 §5.5); CTLs, DEL and NUL are not. */
const VALUE_CHAR = new Uint8Array(256);
VALUE_CHAR[0x09] = 1;
for (let c = 0x20; c <= 0x7e; c++) VALUE_CHAR[c] = 1;
for (let c = 0x80; c <= 0xff; c++) VALUE_CHAR[c] = 1;

const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
const HT = 0x09;

/**
 * Field names on nearly every message. A head reuses these strings instead of slicing and lower-casing its own copies,
 * and later lookups (`=== 'host'`, HOP_BY_HOP.has) hit an already hashed, identical string.
 */
const COMMON = [
  'host', 'user-agent', 'accept', 'accept-encoding', 'accept-language', 'accept-ranges', 'authorization', 'cache-control',
  'connection', 'content-encoding', 'content-length', 'content-type', 'cookie', 'date', 'etag', 'expect', 'keep-alive',
  'last-modified', 'location', 'server', 'set-cookie', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'vary', 'via',
  'x-forwarded-for', 'x-forwarded-proto', 'x-request-id', 'traceparent', 'tracestate', 'grpc-status', 'grpc-message',
  'proxy-connection',
];

/** The names longest among COMMON; a longer name is never common. */
const COMMON_MAX = 17;

/**
 * COMMON by length and first letter (bucket `length << 5 | first & 0x1f`): the candidates for a name, their bytes in
 * COMMON_BYTES, for a compare against the head's bytes. Bytes, not `charCodeAt`: optimized code does not know a
 * constant string's representation and dispatches on it for every character read.
 */
const COMMON_BUCKETS: (readonly number[] | undefined)[] = new Array<undefined>((COMMON_MAX + 1) << 5).fill(undefined);
const COMMON_BYTES = COMMON.map((n) => Buffer.from(n, 'latin1'));
COMMON.forEach((n, i) => {
  const key = (n.length << 5) | (n.charCodeAt(0) & 0x1f);
  COMMON_BUCKETS[key] = [...(COMMON_BUCKETS[key] ?? []), i];
});

/**
 * The common name spelled (in any case) by b[start, end), if any. Names hold only a-z and '-', and b[start, end) only
 * tchar, so OR-ing 0x20 folds case: among tchar only A-Z and a-z become a-z, and only '-' becomes '-'.
 */
export function commonName(b: Buffer, start: number, end: number): string | undefined {
  const len = end - start;
  if (len > COMMON_MAX) return undefined;
  const list = COMMON_BUCKETS[(len << 5) | (b[start]! & 0x1f)];
  if (list === undefined) return undefined;
  next: for (let k = 0; k < list.length; k++) {
    const i = list[k]!;
    const bytes = COMMON_BYTES[i]!;
    for (let j = 1; j < len; j++) if ((b[start + j]! | 0x20) !== bytes[j]) continue next;
    // The bucket fixed the first byte's low five bits only: '!' or 'A' would share 'a''s.
    if ((b[start]! | 0x20) !== bytes[0]) continue;
    return COMMON[i];
  }
  return undefined;
}

/**
 * The field list being parsed, copied to an array of its exact size at the end: a list grown by push from [] starts at
 * 17 slots and grows by half, so a head with one field would carry a 17-slot store and longer ones leave garbage.
 */
const FIELDS: string[] = [];
/** The list of a head until its fields are parsed (never written to). */
const NO_FIELDS: string[] = [];

const KEEP_ALIVE = Buffer.from('keep-alive');
const CLOSE = Buffer.from('close');

/** b[start, end) spells `token` (lower case letters and '-') in any case. */
function isToken(b: Buffer, start: number, end: number, token: Buffer): boolean {
  if (end - start !== token.length) return false;
  for (let i = 0; i < token.length; i++) if ((b[start + i]! | 0x20) !== token[i]) return false;
  return true;
}

/** End of the head (index just past the blank line), 0 when more bytes are needed, or an error when the limit is passed first. */
export function findHeadEnd(buf: Buffer, start: number, limits: HeadLimits): number | HeadParseError {
  const end = blankLineEnd(buf, start);
  if (end === 0) {
    // A head that cannot end within the limit is refused before the rest arrives.
    if (buf.length - start > limits.maxHeadBytes) return new HeadParseError(431, 'request head too large');
    // A bare LF line ending never completes a strict head; refuse it instead of waiting for the timeout.
    const lf = buf.indexOf(LF, start);
    if (lf !== -1 && (lf === start || buf[lf - 1] !== CR)) return new HeadParseError(400, 'bare LF in head');
    return 0;
  }
  if (end - start > limits.maxHeadBytes) return new HeadParseError(431, 'request head too large');
  return end;
}

/**
 * The index just past the first CRLF CRLF at or after `start`, 0 when there is none. Every fourth byte is looked at: a
 * CRLF CRLF holds exactly one of them, and it is a CR or LF; only then are the four windows through it compared. For a
 * head of a few hundred bytes this is a fraction of Buffer.indexOf's native call (40 → 20 ns, 150 → 70 ns).
 */
function blankLineEnd(b: Buffer, start: number): number {
  const n = b.length;
  for (let j = start + 3; j < n; j += 4) {
    const c = b[j];
    if (c !== LF && c !== CR) continue;
    const last = j + 3 < n ? j + 3 : n - 1;
    for (let e = j; e <= last; e++) if (b[e] === LF && b[e - 1] === CR && b[e - 2] === LF && b[e - 3] === CR) return e + 1;
  }
  return 0;
}

export function parseRequestHead(buf: Buffer, start: number, end: number, limits: HeadLimits): RequestHead | HeadParseError {
  const b = buf as FastBuffer;
  // One string for the whole head; its parts are sliced from it in JavaScript (cheaper than a native call per part).
  const text = b.latin1Slice(start, end);
  let p = start;
  while (p < end && TCHAR[b[p]!]! > 0) p++;
  if (p === start || b[p] !== SP) return new HeadParseError(400, 'invalid method');
  const method = text.slice(0, p - start);
  const t0 = ++p;
  while (p < end && b[p]! > 0x20 && b[p]! < 0x7f) p++;
  if (p === t0 || b[p] !== SP) return new HeadParseError(400, 'invalid request target');
  const target = text.slice(t0 - start, p - start);
  p++;
  // "HTTP/1.x\r\n"
  if (b[p] !== 0x48 || b[p + 1] !== 0x54 || b[p + 2] !== 0x54 || b[p + 3] !== 0x50 || b[p + 4] !== 0x2f || b[p + 6] !== 0x2e || b[p + 9] !== LF || b[p + 8] !== CR) {
    return new HeadParseError(400, 'invalid HTTP version');
  }
  if (b[p + 5] !== 0x31 || b[p + 7]! < 0x30 || b[p + 7]! > 0x39) return new HeadParseError(505, 'unsupported HTTP version');
  const head: RequestHead = {
    method,
    target,
    host: undefined,
    expectContinue: false,
    headers: NO_FIELDS,
    minor: b[p + 7] === 0x30 ? 0 : 1,
    contentLength: -1,
    chunked: false,
    close: false,
    upgrade: false,
    headBytes: end - start,
    connectionTokens: undefined,
    fieldCount: 0,
    verbatim: undefined,
  };
  const plain = parseFields(b, text, start, p + 10, end, limits, head, true, false);
  if (plain instanceof HeadParseError) return plain;
  // A head that says HTTP/1.2 is forwarded as HTTP/1.1 (re-serialized), so only a literal 1.1 line leaves verbatim.
  if (plain && b[p + 7] === 0x31 && target.charCodeAt(0) === 0x2f) setVerbatim(head, b, start, end);
  if (target.charCodeAt(0) !== 0x2f && method !== 'CONNECT' && !(target === '*' && method === 'OPTIONS') && !/^https?:\/\//i.test(target)) {
    return new HeadParseError(400, 'invalid request target');
  }
  return head;
}

/**
 * A response head whose reason phrase and field list are decoded when first read: the framing facts are all a
 * forwarder needs for a response no filter or route edits (its bytes go out verbatim), so most responses never turn
 * their fields into strings. The bytes were validated when it was parsed.
 */
class ParsedResponseHead implements ResponseHead {
  status: number;
  minor: number;
  contentLength = -1;
  chunked = false;
  close = false;
  upgrade = false;
  headBytes: number;
  connectionTokens: string[] | undefined = undefined;
  verbatim: Buffer | undefined = undefined;
  grpcStatus: string | undefined = undefined;
  fieldCount = 0;
  readonly #buf: FastBuffer;
  readonly #start: number;
  /** Where the reason phrase starts and ends; where the field lines start. */
  readonly #reason0: number;
  readonly #reason1: number;
  readonly #fields: number;
  readonly #limits: HeadLimits;
  #reason: string | undefined = undefined;
  #headers: string[] | undefined = undefined;

  constructor(b: FastBuffer, start: number, end: number, status: number, minor: number, reason0: number, reason1: number, limits: HeadLimits) {
    this.#buf = b;
    this.#start = start;
    this.status = status;
    this.minor = minor;
    this.headBytes = end - start;
    this.#reason0 = reason0;
    this.#reason1 = reason1;
    this.#fields = reason1 + 2;
    this.#limits = limits;
  }

  get reason(): string {
    return (this.#reason ??= this.#buf.latin1Slice(this.#reason0, this.#reason1));
  }

  set reason(v: string) {
    this.#reason = v;
  }

  get headers(): string[] {
    if (this.#headers === undefined) {
      // The same pass as the parse, keeping names and values this time, over a scratch record of the framing facts.
      const b = this.#buf;
      const end = this.#start + this.headBytes;
      const scratch: ResponseHead = { status: this.status, reason: '', grpcStatus: undefined, headers: NO_FIELDS, minor: this.minor, contentLength: -1, chunked: false, close: false, upgrade: false, headBytes: this.headBytes, connectionTokens: undefined, verbatim: undefined, fieldCount: 0 };
      parseFields(b, b.latin1Slice(this.#start, end), this.#start, this.#fields, end, this.#limits, scratch, false, false);
      this.#headers = scratch.headers;
    }
    return this.#headers;
  }

  set headers(v: string[]) {
    this.#headers = v;
  }
}

/** `withFields`: decode the field list in the same pass (a filter or route operation will read it); else on first read. */
export function parseResponseHead(buf: Buffer, start: number, end: number, limits: HeadLimits, withFields = true): ResponseHead | HeadParseError {
  const b = buf as FastBuffer;
  const p = start;
  if (b[p] !== 0x48 || b[p + 1] !== 0x54 || b[p + 2] !== 0x54 || b[p + 3] !== 0x50 || b[p + 4] !== 0x2f || b[p + 5] !== 0x31 || b[p + 6] !== 0x2e || b[p + 8] !== SP) {
    return new HeadParseError(502, 'invalid status line');
  }
  const minorByte = b[p + 7]!;
  const d0 = b[p + 9]! - 0x30;
  const d1 = b[p + 10]! - 0x30;
  const d2 = b[p + 11]! - 0x30;
  if (minorByte < 0x30 || minorByte > 0x39 || d0 < 1 || d0 > 5 || d1 < 0 || d1 > 9 || d2 < 0 || d2 > 9) return new HeadParseError(502, 'invalid status line');
  let q = p + 12;
  if (b[q] === SP) q++;
  else if (b[q] !== CR) return new HeadParseError(502, 'invalid status line');
  const r0 = q;
  while (q < end && VALUE_CHAR[b[q]!] === 1) q++;
  if (b[q] !== CR || b[q + 1] !== LF) return new HeadParseError(502, 'invalid status line');
  const head = new ParsedResponseHead(b, start, end, d0 * 100 + d1 * 10 + d2, minorByte === 0x30 ? 0 : 1, r0, q, limits);
  const plain = withFields ? parseFields(b, b.latin1Slice(start, end), start, q + 2, end, limits, head, false, false) : parseFields(b, '', start, q + 2, end, limits, head, false, true);
  if (plain instanceof HeadParseError) return plain;
  // A status line without its SP before the (empty) reason is written anew, with the standard phrase.
  if (plain && minorByte === 0x31 && q > r0) setVerbatim(head, b, start, end);
  return head;
}

/** Records the head's bytes b[start, end) as forwardable. */
function setVerbatim(head: MessageHead, b: Buffer, start: number, end: number): void {
  // A read that was exactly one head (a request without a body, most often) is its own view.
  head.verbatim = start === 0 && end === b.length ? b : b.subarray(start, end);
}

/**
 * Parses field lines from `p` to the blank line ending at `end`; fills framing facts into `head`. `text` is the head
 * decoded from buffer offset `base`. Returns whether the fields hold nothing a forwarder drops or re-creates (see
 * MessageHead.verbatim). `lazy`: validate and take the framing facts only, without filling `head.headers` (`text` is
 * then unused: the few values a fact needs are decoded alone).
 */
function parseFields(b: FastBuffer, text: string, base: number, p: number, end: number, limits: HeadLimits, head: RequestHead | ResponseHead, isRequest: boolean, lazy: boolean): HeadParseError | boolean {
  const bad = isRequest ? 400 : 502;
  let fields = 0;
  let nf = 0;
  let keepAlive10 = false;
  let hasHost = false;
  let codings: string | undefined;
  let upgradeHeader: string | undefined;
  let connectionUpgrade = false;
  let plain = true;
  const last = end - 2; // the final CRLF of the blank line
  while (p < last) {
    const c0 = b[p]!;
    if (c0 === SP || c0 === HT) return new HeadParseError(bad, 'obsolete line folding');
    const n0 = p;
    let upper = false;
    for (;;) {
      const t = TCHAR[b[p]!];
      if (t === 1) p++;
      else if (t === 2) {
        upper = true;
        p++;
      } else break;
    }
    if (p === n0 || b[p] !== 0x3a) return new HeadParseError(bad, 'invalid header name');
    let name = commonName(b, n0, p);
    if (name === undefined && !lazy) {
      name = text.slice(n0 - base, p - base);
      if (upper) name = name.toLowerCase();
    }
    p++;
    while (b[p] === SP || b[p] === HT) p++;
    const v0 = p;
    while (VALUE_CHAR[b[p]!] === 1) p++;
    if (b[p] !== CR || b[p + 1] !== LF) return new HeadParseError(bad, 'invalid header value');
    let v1 = p;
    while (v1 > v0 && (b[v1 - 1] === SP || b[v1 - 1] === HT)) v1--;
    p += 2;
    if (++fields > limits.maxHeaders) return new HeadParseError(isRequest ? 431 : 502, 'too many headers');
    // Every field the switch below acts on has a common name, so a lazy pass needs no other name.
    if (name === undefined) continue;
    // Decoded here only when the head keeps its fields; a lazy pass decodes just the values the switch reads.
    let value: string | undefined;
    if (!lazy) {
      FIELDS[nf++] = name;
      FIELDS[nf++] = value = text.slice(v0 - base, v1 - base);
    }
    switch (name.length) {
      case 2:
        if (name === 'te') plain = false;
        break;
      case 4:
        if (name === 'host') {
          if (hasHost) return new HeadParseError(bad, 'duplicate host header');
          hasHost = true;
          (head as RequestHead).host = value ?? b.latin1Slice(v0, v1);
        }
        break;
      case 6:
        if (isRequest && name === 'expect' && (value ?? b.latin1Slice(v0, v1)).toLowerCase() === '100-continue') (head as RequestHead).expectContinue = true;
        break;
      case 7:
        if (name === 'upgrade') {
          value ??= b.latin1Slice(v0, v1);
          upgradeHeader = upgradeHeader === undefined ? value : `${upgradeHeader}, ${value}`;
          plain = false;
        }
        break;
      case 10:
        if (name === 'keep-alive') plain = false;
        else if (name === 'connection') {
          // The one-token values nearly every message carries, without splitting: `connection: keep-alive` is what
          // the proxy does on the next hop too (a verbatim copy may keep that line); `close` ends the connection.
          if (isToken(b, v0, v1, KEEP_ALIVE)) {
            keepAlive10 = true;
            break;
          }
          plain = false;
          if (isToken(b, v0, v1, CLOSE)) {
            head.close = true;
            break;
          }
          for (const raw of (value ?? b.latin1Slice(v0, v1)).split(',')) {
            const token = raw.trim().toLowerCase();
            if (token === 'close') head.close = true;
            else if (token === 'keep-alive') keepAlive10 = true;
            else if (token === 'upgrade') connectionUpgrade = true;
            else if (token !== '') (head.connectionTokens ??= []).push(token);
          }
        }
        break;
      case 14:
        if (name === 'content-length') {
          const n = contentLengthOf(b, v0, v1);
          if (n < 0 || (head.contentLength !== -1 && head.contentLength !== n)) return new HeadParseError(bad, 'invalid content-length');
          if (head.contentLength !== -1) plain = false;
          head.contentLength = n;
        }
        break;
      case 17:
        if (name === 'transfer-encoding') {
          value ??= b.latin1Slice(v0, v1);
          // Several lines are one list (RFC 9110 §5.3); judged once the head is read.
          codings = codings === undefined ? value : `${codings}, ${value}`;
          plain = false;
        }
        break;
      case 11:
        if (isRequest) {
          if (name === 'traceparent') plain = false;
        } else if (name === 'grpc-status' && (head as ResponseHead).grpcStatus === undefined) (head as ResponseHead).grpcStatus = value ?? b.latin1Slice(v0, v1);
        break;
      case 16:
        if (name === 'proxy-connection') plain = false;
        break;
    }
  }
  if (p !== last) return new HeadParseError(bad, 'malformed head');
  if (codings !== undefined) {
    const framing = transferCodings(codings, head.minor, isRequest);
    if (framing !== undefined) return framing;
    head.chunked = true;
  }
  // RFC 9112 §6.3: a message with both is a smuggling attempt as often as not; no recipient must be left to pick one.
  if (head.chunked && head.contentLength !== -1) return new HeadParseError(bad, 'both content-length and transfer-encoding');
  if (head.minor === 0 && !keepAlive10) head.close = true;
  head.upgrade = upgradeHeader !== undefined && connectionUpgrade && head.minor === 1 && !offersH2c(upgradeHeader);
  if (isRequest && head.minor === 1 && !hasHost) return new HeadParseError(400, 'missing host header');
  if (!lazy) head.headers = FIELDS.slice(0, nf);
  head.fieldCount = fields;
  return plain;
}

/**
 * Judges a Transfer-Encoding list: undefined when it is exactly one `chunked` on HTTP/1.1, the error otherwise.
 * Requests (RFC 9112 §6.1, §6.3 rule 4): on HTTP/1.0 the framing is faulty, 400; `chunked` missing, not final or
 * applied twice, 400 (the length cannot be determined); `chunked` last after a coding weft does not implement, 501.
 * Responses: anything but one `chunked` is 502, never read to the close (the upstream connection is dropped).
 */
function transferCodings(list: string, minor: number, isRequest: boolean): HeadParseError | undefined {
  const codings: string[] = [];
  for (const raw of list.split(',')) {
    const coding = raw.trim().toLowerCase();
    if (coding !== '') codings.push(coding);
  }
  if (codings.length === 1 && codings[0] === 'chunked' && minor === 1) return undefined;
  if (!isRequest) return new HeadParseError(502, `unsupported transfer-encoding "${list}"`);
  if (minor === 0) return new HeadParseError(400, 'transfer-encoding on HTTP/1.0');
  const chunked = codings.filter((c) => c === 'chunked').length;
  if (chunked !== 1 || codings[codings.length - 1] !== 'chunked') return new HeadParseError(400, `transfer-encoding "${list}" does not end in a single chunked`);
  return new HeadParseError(501, `transfer coding not implemented: "${list}"`);
}

/** The Upgrade list names h2c (RFC 9113 §3.1). */
function offersH2c(upgrade: string): boolean {
  for (const raw of upgrade.split(',')) if (raw.trim().toLowerCase() === 'h2c') return true;
  return false;
}

/** A content-length value, b[start, end) (trimmed): 1 to 15 digits; -1 otherwise. */
function contentLengthOf(b: Buffer, start: number, end: number): number {
  if (end === start || end - start > 15) return -1;
  let n = 0;
  for (let i = start; i < end; i++) {
    const d = b[i]! - 0x30;
    if (d < 0 || d > 9) return -1;
    n = n * 10 + d;
  }
  return n;
}

/** Hop-by-hop headers never forwarded (RFC 9110 §7.6.1), plus the framing headers the forwarder re-creates. */
export const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'transfer-encoding', 'upgrade', 'content-length', 'http2-settings']);
