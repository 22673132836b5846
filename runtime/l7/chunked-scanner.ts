/** Incremental scanner for chunked transfer coding (RFC 9112 §7.1): finds where a chunked body ends and validates its framing while the bytes are forwarded unchanged; optionally hands out the decoded data. */

const S = {
  size: 0,
  ext: 1,
  sizeLf: 2,
  data: 3,
  dataCr: 4,
  dataLf: 5,
  trailerStart: 6,
  trailerLine: 7,
  trailerLf: 8,
  finalLf: 9,
  done: 10,
} as const;
type State = (typeof S)[keyof typeof S];

const HEX = new Int8Array(256).fill(-1);
for (let c = 0; c < 10; c++) HEX[0x30 + c] = c;
for (let c = 0; c < 6; c++) {
  HEX[0x41 + c] = 10 + c;
  HEX[0x61 + c] = 10 + c;
}

/** Chunk sizes past 2^48 cannot be honest and would lose precision in a JS number. */
const MAX_SIZE_DIGITS = 12;
/** Bound on chunk-extension and trailer bytes, which are otherwise unbounded attacker input. */
const MAX_META_BYTES = 16 * 1024;

export class ChunkedScanner {
  #state: State = S.size;
  #remaining = 0;
  #digits = 0;
  #meta = 0;
  /** Set when the framing is invalid; the message cannot be forwarded further. */
  error: string | undefined;

  get done(): boolean {
    return this.#state === S.done;
  }

  /**
   * Scans buf[start, end). Returns the index just past the final CRLF when the body ends inside this range,
   * -1 when more bytes are needed, -2 on a framing error (see `error`). `onData` receives decoded data slices.
   */
  feed(buf: Buffer, start: number, end: number, onData?: (chunk: Buffer) => void): number {
    let p = start;
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
          else if (c === 0x3b) {
            this.#state = S.ext;
            p++;
          } else if (c === 0x0d) {
            this.#state = S.sizeLf;
            p++;
          } else return this.#fail('invalid chunk size');
          break;
        }
        case S.ext:
          // Extensions are ignored but must stay on one line of visible characters.
          if (c === 0x0d) this.#state = S.sizeLf;
          else if ((c < 0x20 && c !== 0x09) || c === 0x7f) return this.#fail('invalid chunk extension');
          else if (++this.#meta > MAX_META_BYTES) return this.#fail('chunk extension too long');
          p++;
          break;
        case S.sizeLf:
          if (c !== 0x0a) return this.#fail('missing LF after chunk size');
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
          if (c !== 0x0d) return this.#fail('missing CRLF after chunk data');
          this.#state = S.dataLf;
          p++;
          break;
        case S.dataLf:
          if (c !== 0x0a) return this.#fail('missing CRLF after chunk data');
          this.#state = S.size;
          p++;
          break;
        case S.trailerStart:
          if (c === 0x0d) this.#state = S.finalLf;
          else if (c === 0x20 || c === 0x09) return this.#fail('obsolete line folding in trailer');
          else this.#state = S.trailerLine;
          p++;
          break;
        case S.trailerLine:
          if (c === 0x0d) this.#state = S.trailerLf;
          else if ((c < 0x20 && c !== 0x09) || c === 0x7f) return this.#fail('invalid trailer');
          if (++this.#meta > MAX_META_BYTES) return this.#fail('trailers too long');
          p++;
          break;
        case S.trailerLf:
          if (c !== 0x0a) return this.#fail('missing LF in trailer');
          this.#state = S.trailerStart;
          p++;
          break;
        case S.finalLf:
          if (c !== 0x0a) return this.#fail('missing final LF');
          this.#state = S.done;
          return p + 1;
        default:
          return p;
      }
    }
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
