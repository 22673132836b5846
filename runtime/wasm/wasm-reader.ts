/** Bounds-checked reading of the WebAssembly binary format (LEB128 integers, names, sub-ranges); every overrun is a clear load error. */
import { WeftError } from '../errors.js';

const utf8 = new TextDecoder('utf-8', { fatal: false });

export class WasmReader {
  readonly bytes: Uint8Array;
  pos: number;
  readonly end: number;

  constructor(bytes: Uint8Array, start = 0, end = bytes.length) {
    this.bytes = bytes;
    this.pos = start;
    this.end = end;
  }

  get done(): boolean {
    return this.pos >= this.end;
  }

  fail(what: string): never {
    throw new WeftError('WEFT_ERR_PLUGIN_LOAD', `malformed WebAssembly: ${what} at byte ${this.pos}`);
  }

  private need(n: number): void {
    if (this.pos + n > this.end) this.fail(`truncated (needed ${n} more byte${n === 1 ? '' : 's'}, ${this.end - this.pos} left)`);
  }

  u8(): number {
    this.need(1);
    return this.bytes[this.pos++]!;
  }

  peek(): number {
    this.need(1);
    return this.bytes[this.pos]!;
  }

  /** Unsigned LEB128 up to 32 bits. */
  u32(): number {
    let result = 0;
    let shift = 0;
    for (;;) {
      const b = this.u8();
      result += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) break;
      shift += 7;
      if (shift > 28) {
        const last = this.u8();
        if ((last & 0x80) !== 0 || last > 0x0f) this.fail('integer too long for u32');
        result += last * 2 ** 35;
        break;
      }
    }
    if (result > 0xffffffff) this.fail('integer too large for u32');
    return result;
  }

  /** Skips a signed or unsigned LEB128 of at most `maxBytes` bytes. */
  skipLeb(maxBytes: number): void {
    for (let i = 0; i < maxBytes; i++) if ((this.u8() & 0x80) === 0) return;
    this.fail('LEB128 integer too long');
  }

  /** Signed LEB128 (up to 33 bits, enough for block types and i32 constants), as a JS number. */
  s33(): number {
    let result = 0;
    let shift = 0;
    let b: number;
    do {
      b = this.u8();
      result += (b & 0x7f) * 2 ** shift;
      shift += 7;
      if (shift > 35) this.fail('LEB128 integer too long');
    } while ((b & 0x80) !== 0);
    if ((b & 0x40) !== 0) result -= 2 ** shift;
    return result;
  }

  skip(n: number): void {
    this.need(n);
    this.pos += n;
  }

  take(n: number): Uint8Array {
    this.need(n);
    const out = this.bytes.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  name(): string {
    return utf8.decode(this.take(this.u32()));
  }
}
