/** An append-only byte sink for re-emitting a WebAssembly module: LEB128 encoders and length-prefixed sections. */

export class WasmWriter {
  #buf: Uint8Array;
  length = 0;

  constructor(initial = 1024) {
    this.#buf = new Uint8Array(initial);
  }

  #reserve(n: number): void {
    if (this.length + n <= this.#buf.length) return;
    let size = this.#buf.length * 2;
    while (size < this.length + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.#buf.subarray(0, this.length));
    this.#buf = next;
  }

  byte(b: number): void {
    this.#reserve(1);
    this.#buf[this.length++] = b;
  }

  bytes(data: Uint8Array): void {
    this.#reserve(data.length);
    this.#buf.set(data, this.length);
    this.length += data.length;
  }

  u32(value: number): void {
    let v = value >>> 0;
    do {
      let b = v & 0x7f;
      v >>>= 7;
      if (v !== 0) b |= 0x80;
      this.byte(b);
    } while (v !== 0);
  }

  s32(value: number): void {
    let v = value | 0;
    for (;;) {
      const b = v & 0x7f;
      v >>= 7;
      if ((v === 0 && (b & 0x40) === 0) || (v === -1 && (b & 0x40) !== 0)) {
        this.byte(b);
        return;
      }
      this.byte(b | 0x80);
    }
  }

  name(text: string): void {
    const encoded = new TextEncoder().encode(text);
    this.u32(encoded.length);
    this.bytes(encoded);
  }

  /** Writes `id`, then the payload produced by `fill` prefixed with its length. */
  section(id: number, fill: (w: WasmWriter) => void): void {
    const inner = new WasmWriter();
    fill(inner);
    this.byte(id);
    this.u32(inner.length);
    this.bytes(inner.finish());
  }

  finish(): Uint8Array {
    return this.#buf.subarray(0, this.length);
  }
}
