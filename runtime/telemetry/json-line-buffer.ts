/**
 * Writes JSON lines straight into a reused Buffer, byte for byte what `JSON.stringify` of the same object would give,
 * for the access log: no string per line, no batch string to flatten and convert to UTF-8 before each file write.
 */

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const INITIAL_BYTES = 128 * 1024;

/** A key written as `"name":`, with the comma that separates it from the field before it. */
export interface JsonKey {
  readonly first: Uint8Array;
  readonly next: Uint8Array;
}

export function jsonKey(name: string): JsonKey {
  const text = `${JSON.stringify(name)}:`;
  return { first: Buffer.from(text), next: Buffer.from(`,${text}`) };
}

/** Bytes that open every line of one kind (e.g. `{"kind":"http","worker":0,`), written before its first field. */
export function jsonPrefix(text: string): Uint8Array {
  return Buffer.from(text);
}

export class JsonLineBuffer {
  buf: Buffer;
  /** Bytes written so far (whole lines, plus the line being written). */
  length = 0;
  #fields = 0;

  constructor(bytes = INITIAL_BYTES) {
    this.buf = Buffer.allocUnsafeSlow(bytes);
  }

  /** Starts a line with `prefix` (bytes that open the object, e.g. `{"kind":"http",` or just `{`). */
  begin(prefix: Uint8Array): void {
    this.#raw(prefix);
    this.#fields = 0;
  }

  /** Ends the object and the line. */
  end(): void {
    this.#reserve(2);
    this.buf[this.length++] = 0x7d;
    this.buf[this.length++] = 0x0a;
  }

  /** A string field; any other value is written as JSON.stringify writes it in an object (left out when undefined). */
  string(key: JsonKey, value: string): void {
    if (typeof value !== 'string') return this.#other(key, value);
    this.#key(key);
    const n = value.length;
    this.#reserve(n + 2);
    const buf = this.buf;
    const start = this.length;
    let at = start;
    buf[at++] = QUOTE;
    for (let i = 0; i < n; i++) {
      const c = value.charCodeAt(i);
      // Printable ASCII other than quote and backslash is its own JSON; anything else takes the general path.
      if (c < 0x20 || c > 0x7e || c === QUOTE || c === BACKSLASH) {
        this.length = start;
        return this.#text(JSON.stringify(value));
      }
      buf[at++] = c;
    }
    buf[at++] = QUOTE;
    this.length = at;
  }

  /** A number field, as JSON writes it (`null` for NaN and the infinities). */
  number(key: JsonKey, value: number): void {
    if (typeof value !== 'number') return this.#other(key, value);
    this.#key(key);
    if (Number.isInteger(value) && value >= 0 && value < 1e15) this.#digits(value);
    else this.#text(Number.isFinite(value) ? String(value) : 'null');
  }

  /** Hands out the bytes written so far and starts over in `next` (a Buffer no longer in use), or in this one. */
  take(next?: Buffer): Buffer {
    const out = this.buf.subarray(0, this.length);
    if (next !== undefined) this.buf = next;
    this.length = 0;
    return out;
  }

  #key(key: JsonKey): void {
    this.#raw(this.#fields++ === 0 ? key.first : key.next);
  }

  #other(key: JsonKey, value: unknown): void {
    const text = JSON.stringify(value) as string | undefined;
    if (text === undefined) return;
    this.#key(key);
    this.#text(text);
  }

  /** JSON text that is already escaped, in UTF-8. */
  #text(text: string): void {
    this.#reserve(text.length * 3);
    this.length += this.buf.write(text, this.length, 'utf8');
  }

  #digits(value: number): void {
    let digits = 1;
    for (let v = value; v >= 10; v = Math.floor(v / 10)) digits++;
    this.#reserve(digits);
    const buf = this.buf;
    let at = this.length + digits;
    this.length = at;
    let v = value;
    do {
      const q = Math.floor(v / 10);
      buf[--at] = 0x30 + (v - q * 10);
      v = q;
    } while (v > 0);
  }

  /** Short constant bytes (keys, prefixes): a loop costs less than a native copy call for a dozen bytes. */
  #raw(bytes: Uint8Array): void {
    const n = bytes.length;
    this.#reserve(n);
    const buf = this.buf;
    const at = this.length;
    for (let i = 0; i < n; i++) buf[at + i] = bytes[i]!;
    this.length = at + n;
  }

  /** Room for `n` more bytes: a line longer than the buffer moves everything into one twice as large (rare). */
  #reserve(n: number): void {
    if (this.length + n <= this.buf.length) return;
    const bigger = Buffer.allocUnsafeSlow(Math.max(this.buf.length * 2, this.length + n));
    this.buf.copy(bigger, 0, 0, this.length);
    this.buf = bigger;
  }
}
