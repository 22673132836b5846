/**
 * Writes JSON lines straight into a reused Buffer, byte for byte what `JSON.stringify` of the same object would give,
 * for the access log: no string per line, no batch string to flatten and convert to UTF-8 before each file write.
 */

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const INITIAL_BYTES = 128 * 1024;
/** Up to this many characters a JavaScript loop checks and copies a string faster than a regular expression and a native write. */
const SHORT = 64;
/** Anything but printable ASCII other than quote and backslash. */
const NEEDS_ESCAPE_OR_UTF8 = /[^\x20\x21\x23-\x5b\x5d-\x7e]/;
/** A field longer than this is not remembered (its bytes would be a copy as long as the field). */
const REMEMBER_BYTES = 256;

/**
 * A key written as `"name":`, with the comma that separates it from the field before it. A key made with `repeats`
 * remembers its last field's bytes (comma, key and value): a field whose value repeats from line to line (the
 * upstream, the service, the client of a keep-alive connection, the millisecond) is then one copy.
 */
export interface JsonKey {
  readonly first: Uint8Array;
  readonly next: Uint8Array;
  readonly repeats: boolean;
  last: unknown;
  lastBytes: Uint8Array | undefined;
}

export function jsonKey(name: string, opts: { repeats?: boolean } = {}): JsonKey {
  const text = `${JSON.stringify(name)}:`;
  return { first: Buffer.from(text), next: Buffer.from(`,${text}`), repeats: opts.repeats ?? false, last: undefined, lastBytes: undefined };
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
    if (this.#repeated(key, value)) return;
    const from = this.length;
    this.#key(key);
    const n = value.length;
    this.#reserve(n + 2);
    const buf = this.buf;
    const start = this.length;
    buf[start] = QUOTE;
    if (n > SHORT) {
      if (NEEDS_ESCAPE_OR_UTF8.test(value)) return this.#escaped(key, value, from);
      // Printable ASCII other than quote and backslash is its own JSON, and its bytes are its characters.
      buf.latin1Write(value, start + 1, n);
    } else {
      for (let i = 0; i < n; i++) {
        const c = value.charCodeAt(i);
        if (c < 0x20 || c > 0x7e || c === QUOTE || c === BACKSLASH) return this.#escaped(key, value, from);
        buf[start + 1 + i] = c;
      }
    }
    buf[start + 1 + n] = QUOTE;
    this.length = start + n + 2;
    this.#remember(key, value, from);
  }

  /** A number field, as JSON writes it (`null` for NaN and the infinities). */
  number(key: JsonKey, value: number): void {
    if (typeof value !== 'number') return this.#other(key, value);
    if (this.#repeated(key, value)) return;
    const from = this.length;
    this.#key(key);
    if (value >= 0 && value < 1e15 && Math.floor(value) === value) this.#digits(value);
    else this.#text(Number.isFinite(value) ? String(value) : 'null');
    this.#remember(key, value, from);
  }

  /** Hands out the bytes written so far and starts over in `next` (a Buffer no longer in use), or in this one. */
  take(next?: Buffer): Buffer {
    const out = this.buf.subarray(0, this.length);
    if (next !== undefined) this.buf = next;
    this.length = 0;
    return out;
  }

  /** The field is the same as the last one written under `key` (not first on its line): its bytes again. */
  #repeated(key: JsonKey, value: unknown): boolean {
    if (key.last !== value || this.#fields === 0 || key.lastBytes === undefined) return false;
    this.#raw(key.lastBytes);
    this.#fields++;
    return true;
  }

  #remember(key: JsonKey, value: unknown, from: number): void {
    if (!key.repeats || from === this.length || this.length - from > REMEMBER_BYTES || this.buf[from] !== 0x2c) return;
    key.last = value;
    // A copy: Buffer#slice would be a view of bytes this buffer overwrites after its next take().
    key.lastBytes = new Uint8Array(this.buf.subarray(from, this.length));
  }

  #key(key: JsonKey): void {
    this.#raw(this.#fields++ === 0 ? key.first : key.next);
  }

  /** A string that needs escapes or is not all ASCII: JSON.stringify's text, in UTF-8 (the key is already written). */
  #escaped(key: JsonKey, value: string, from: number): void {
    this.#text(JSON.stringify(value));
    this.#remember(key, value, from);
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

  /** Constant bytes (keys, prefixes, remembered fields): TypedArray set is a memmove, cheaper than a loop past a few bytes. */
  #raw(bytes: Uint8Array): void {
    this.#reserve(bytes.length);
    this.buf.set(bytes, this.length);
    this.length += bytes.length;
  }

  /** Room for `n` more bytes: a line longer than the buffer moves everything into one twice as large (rare). */
  #reserve(n: number): void {
    if (this.length + n <= this.buf.length) return;
    const bigger = Buffer.allocUnsafeSlow(Math.max(this.buf.length * 2, this.length + n));
    this.buf.copy(bigger, 0, 0, this.length);
    this.buf = bigger;
  }
}
