/** Incremental scanner for chunked transfer coding (RFC 9112 §7.1): finds where a chunked body ends and validates its framing to the letter of the grammar while the bytes are forwarded; hands out the decoded data and marks the trailer field lines, which are never forwarded. */

const S = {
  size: 0,
  /** After the size, an extension name or value: BWS, then `;`, `=` (after a name) or CR. */
  extSep: 1,
  extNameStart: 2,
  extName: 3,
  extValueStart: 4,
  extToken: 5,
  extQuoted: 6,
  extQuotedPair: 7,
  sizeLf: 8,
  data: 9,
  dataCr: 10,
  dataLf: 11,
  trailerStart: 12,
  trailerName: 13,
  trailerValue: 14,
  trailerLf: 15,
  finalLf: 16,
  done: 17,
} as const;
type State = (typeof S)[keyof typeof S];

const HEX = new Int8Array(256).fill(-1);
for (let c = 0; c < 10; c++) HEX[0x30 + c] = c;
for (let c = 0; c < 6; c++) {
  HEX[0x41 + c] = 10 + c;
  HEX[0x61 + c] = 10 + c;
}

/** tchar (RFC 9110 §5.6.2). */
const TCHAR = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~") TCHAR[c.charCodeAt(0)] = 1;
for (let c = 0x30; c <= 0x39; c++) TCHAR[c] = 1;
for (let c = 0x41; c <= 0x5a; c++) TCHAR[c] = 1;
for (let c = 0x61; c <= 0x7a; c++) TCHAR[c] = 1;

/** field-value bytes (RFC 9110 §5.5): HTAB, SP, VCHAR, obs-text; the same set the head parser accepts. */
const VALUE_CHAR = new Uint8Array(256);
VALUE_CHAR[0x09] = 1;
for (let c = 0x20; c <= 0x7e; c++) VALUE_CHAR[c] = 1;
for (let c = 0x80; c <= 0xff; c++) VALUE_CHAR[c] = 1;

/** qdtext (RFC 9110 §5.6.4): HTAB, SP, 0x21, 0x23–0x5B, 0x5D–0x7E, obs-text. */
const QDTEXT = new Uint8Array(VALUE_CHAR);
QDTEXT[0x22] = 0;
QDTEXT[0x5c] = 0;

const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
const HT = 0x09;

/** Chunk sizes past 2^48 cannot be honest and would lose precision in a JS number. */
const MAX_SIZE_DIGITS = 12;
/** Bound on chunk-extension and trailer bytes, which are otherwise unbounded attacker input. */
const MAX_META_BYTES = 16 * 1024;

export class ChunkedScanner {
  #state: State = S.size;
  #remaining = 0;
  #digits = 0;
  #meta = 0;
  /** The extension separator state follows a name (so `=` may come next). */
  #afterName = false;
  /** Trailer field lines have begun: their bytes are held back from forwarding. */
  #inTrailers = false;
  /** Set when the framing is invalid; the message cannot be forwarded further. */
  error: string | undefined;
  /**
   * Trailer field bytes inside the range the last feed() consumed, [heldFrom, heldTo): the caller forwards the range
   * without them. heldFrom is -1 when there were none (the common case).
   */
  heldFrom = -1;
  heldTo = -1;

  get done(): boolean {
    return this.#state === S.done;
  }

  /**
   * Scans buf[start, end). Returns the index just past the final CRLF when the body ends inside this range,
   * -1 when more bytes are needed, -2 on a framing error (see `error`). `onData` receives decoded data slices.
   */
  feed(buf: Buffer, start: number, end: number, onData?: (chunk: Buffer) => void): number {
    let p = start;
    this.heldFrom = this.#inTrailers ? start : -1;
    this.heldTo = start;
    while (p < end) {
      const c = buf[p]!;
      switch (this.#state) {
        case S.size: {
          const h = HEX[c]!;
          if (h >= 0) {
            if (++this.#digits > MAX_SIZE_DIGITS) return this.#fail('chunk size too large');
            this.#remaining = this.#remaining * 16 + h;
            p++;
          } else if (this.#digits === 0) return this.#fail('invalid chunk size');
          else {
            this.#state = S.extSep;
            this.#afterName = false;
          }
          break;
        }
        case S.extSep:
          // chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] ), then CRLF and nothing else.
          if (c === CR) this.#state = S.sizeLf;
          else if (c === 0x3b) this.#state = S.extNameStart;
          else if (c === 0x3d && this.#afterName) this.#state = S.extValueStart;
          else if (c !== SP && c !== HT) return this.#fail(c === LF ? 'bare LF after chunk size' : 'invalid chunk extension');
          if (++this.#meta > MAX_META_BYTES) return this.#fail('chunk extension too long');
          p++;
          break;
        case S.extNameStart:
          if (TCHAR[c] === 1) this.#state = S.extName;
          else if (c !== SP && c !== HT) return this.#fail('invalid chunk extension');
          if (++this.#meta > MAX_META_BYTES) return this.#fail('chunk extension too long');
          p++;
          break;
        case S.extName:
        case S.extToken:
          if (TCHAR[c] === 1) {
            if (++this.#meta > MAX_META_BYTES) return this.#fail('chunk extension too long');
            p++;
          } else {
            this.#afterName = this.#state === S.extName;
            this.#state = S.extSep;
          }
          break;
        case S.extValueStart:
          if (c === 0x22) this.#state = S.extQuoted;
          else if (TCHAR[c] === 1) this.#state = S.extToken;
          else if (c !== SP && c !== HT) return this.#fail('invalid chunk extension');
          if (++this.#meta > MAX_META_BYTES) return this.#fail('chunk extension too long');
          p++;
          break;
        case S.extQuoted:
          if (c === 0x22) {
            this.#state = S.extSep;
            this.#afterName = false;
          } else if (c === 0x5c) this.#state = S.extQuotedPair;
          else if (QDTEXT[c] !== 1) return this.#fail('invalid quoted string in chunk extension');
          if (++this.#meta > MAX_META_BYTES) return this.#fail('chunk extension too long');
          p++;
          break;
        case S.extQuotedPair:
          if (VALUE_CHAR[c] !== 1) return this.#fail('invalid quoted pair in chunk extension');
          this.#state = S.extQuoted;
          p++;
          break;
        case S.sizeLf:
          if (c !== LF) return this.#fail('missing LF after chunk size');
          p++;
          this.#digits = 0;
          this.#state = this.#remaining === 0 ? S.trailerStart : S.data;
          break;
        case S.data: {
          const take = Math.min(this.#remaining, end - p);
          if (onData !== undefined) onData(buf.subarray(p, p + take));
          p += take;
          this.#remaining -= take;
          if (this.#remaining === 0) this.#state = S.dataCr;
          break;
        }
        case S.dataCr:
          if (c !== CR) return this.#fail('missing CRLF after chunk data');
          this.#state = S.dataLf;
          p++;
          break;
        case S.dataLf:
          if (c !== LF) return this.#fail('missing CRLF after chunk data');
          this.#state = S.size;
          p++;
          break;
        case S.trailerStart:
          // trailer-section = *( field-line CRLF ) with the head's rules (RFC 9112 §7.1.2, §5).
          if (c === CR) {
            this.#state = S.finalLf;
            if (this.#inTrailers) this.heldTo = p;
          } else if (TCHAR[c] === 1) {
            this.#state = S.trailerName;
            if (!this.#inTrailers) {
              this.#inTrailers = true;
              this.heldFrom = p;
            }
          } else if (c === SP || c === HT) return this.#fail('obsolete line folding in trailer');
          else return this.#fail(c === LF ? 'bare LF in trailer section' : 'invalid trailer field');
          if (++this.#meta > MAX_META_BYTES) return this.#fail('trailers too long');
          p++;
          break;
        case S.trailerName:
          if (c === 0x3a) this.#state = S.trailerValue;
          else if (TCHAR[c] !== 1) return this.#fail('invalid trailer field name');
          if (++this.#meta > MAX_META_BYTES) return this.#fail('trailers too long');
          p++;
          break;
        case S.trailerValue:
          if (c === CR) this.#state = S.trailerLf;
          else if (VALUE_CHAR[c] !== 1) return this.#fail(c === LF ? 'bare LF in trailer section' : 'invalid trailer field value');
          if (++this.#meta > MAX_META_BYTES) return this.#fail('trailers too long');
          p++;
          break;
        case S.trailerLf:
          if (c !== LF) return this.#fail('bare CR in trailer section');
          this.#state = S.trailerStart;
          p++;
          break;
        case S.finalLf:
          if (c !== LF) return this.#fail('missing final LF');
          this.#state = S.done;
          return p + 1;
        default:
          return p;
      }
    }
    if (this.#inTrailers && this.#state !== S.finalLf) this.heldTo = end;
    return -1;
  }

  #fail(reason: string): number {
    this.error = reason;
    return -2;
  }
}

/** Frames one buffered body as a single chunk plus the terminator. */
export function encodeChunk(data: Buffer): Buffer[] {
  if (data.length === 0) return [Buffer.from('0\r\n\r\n')];
  return [Buffer.from(`${data.length.toString(16)}\r\n`), data, Buffer.from('\r\n0\r\n\r\n')];
}
