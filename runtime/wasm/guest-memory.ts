/**
 * Views of a plugin's linear memory that survive growth: every access re-checks whether `memory.buffer` was replaced
 * (growing detaches the old ArrayBuffer), and host-to-guest data goes through the guest's own allocator as the ABI requires.
 */
import { Status, type StatusCode } from './abi-constants.js';

const utf8Decoder = new TextDecoder('utf-8');
const utf8Encoder = new TextEncoder();

export class GuestMemory {
  readonly memory: WebAssembly.Memory;
  /** The guest allocator (`proxy_on_memory_allocate` or `malloc`); set once exports are known. */
  allocator: ((size: number) => number) | undefined;
  #ab: ArrayBuffer;
  u8: Uint8Array;
  buf: Buffer;
  view: DataView;

  constructor(memory: WebAssembly.Memory) {
    this.memory = memory;
    this.#ab = memory.buffer;
    this.u8 = new Uint8Array(this.#ab);
    this.buf = Buffer.from(this.#ab);
    this.view = new DataView(this.#ab);
  }

  /**
   * Cheap when nothing changed: one length check. Growing a (non-shared) memory detaches its old ArrayBuffer (WebAssembly
   * JS API, memory.grow), whose length then reads 0, so the `memory.buffer` getter (a call into the engine, a tenth of
   * a header hostcall's cost) is only asked after a growth. Call before touching u8/buf/view after any guest call.
   */
  refresh(): void {
    if (this.#ab.byteLength !== 0) return;
    const ab = this.memory.buffer;
    if (ab === this.#ab) return;
    this.#ab = ab;
    this.u8 = new Uint8Array(ab);
    this.buf = Buffer.from(ab);
    this.view = new DataView(ab);
  }

  get size(): number {
    this.refresh();
    return this.#ab.byteLength;
  }

  /** ptr and len are already unsigned. */
  inBounds(ptr: number, len: number): boolean {
    this.refresh();
    return ptr + len <= this.#ab.byteLength;
  }

  /** A byte string (one char per byte), the representation weft uses for header names and values. */
  latin1(ptr: number, len: number): string {
    return len === 0 ? '' : this.buf.latin1Slice(ptr, ptr + len);
  }

  utf8(ptr: number, len: number): string {
    return len === 0 ? '' : utf8Decoder.decode(this.u8.subarray(ptr, ptr + len));
  }

  /** A copy, safe to keep across guest calls. */
  copy(ptr: number, len: number): Uint8Array {
    return this.u8.slice(ptr, ptr + len);
  }

  setU32(ptr: number, value: number): void {
    this.view.setUint32(ptr, value, true);
  }

  /** Writes `value` at `ptr` when the 4 bytes are in bounds. */
  writeU32(ptr: number, value: number): StatusCode {
    if (!this.inBounds(ptr, 4)) return Status.InvalidMemoryAccess;
    this.view.setUint32(ptr, value >>> 0, true);
    return Status.Ok;
  }

  writeU64(ptr: number, value: bigint): StatusCode {
    if (!this.inBounds(ptr, 8)) return Status.InvalidMemoryAccess;
    this.view.setBigUint64(ptr, BigInt.asUintN(64, value), true);
    return Status.Ok;
  }

  /** writeU64 of a non-negative integer-valued double (no BigInt on hot paths such as the clock): its exact value. */
  writeU64Number(ptr: number, value: number): StatusCode {
    if (!this.inBounds(ptr, 8)) return Status.InvalidMemoryAccess;
    // Division and multiplication by 2^32 are exact on doubles, so high * 2^32 + low is the value itself.
    const high = Math.floor(value / 4294967296);
    this.view.setUint32(ptr, value - high * 4294967296, true);
    this.view.setUint32(ptr + 4, high, true);
    return Status.Ok;
  }

  /** Asks the guest for `size` bytes; 0 when it refuses or answers out of bounds. May grow memory (views refresh). */
  allocate(size: number): number {
    if (this.allocator === undefined) return 0;
    const ptr = this.allocator(size) >>> 0;
    this.refresh();
    if (ptr === 0 || ptr + size > this.#ab.byteLength) return 0;
    return ptr;
  }

  /**
   * Reserves `len` guest bytes for a result and writes (ptr, len) into the out-slots: the pointer to fill, 0 for an
   * empty result, or -1 when a slot is out of bounds or the guest allocator refuses (answer INVALID_MEMORY_ACCESS).
   */
  allocOut(len: number, retPtr: number, retLen: number): number {
    if (!this.inBounds(retPtr, 4) || !this.inBounds(retLen, 4)) return -1;
    let ptr = 0;
    if (len > 0) {
      ptr = this.allocate(len);
      if (ptr === 0) return -1;
    }
    this.view.setUint32(retPtr, ptr, true);
    this.view.setUint32(retLen, len, true);
    return ptr;
  }

  returnBytes(data: Uint8Array, retPtr: number, retLen: number): StatusCode {
    const ptr = this.allocOut(data.length, retPtr, retLen);
    if (ptr < 0) return Status.InvalidMemoryAccess;
    if (data.length > 0) this.u8.set(data, ptr);
    return Status.Ok;
  }

  returnLatin1(text: string, retPtr: number, retLen: number): StatusCode {
    const ptr = this.allocOut(text.length, retPtr, retLen);
    if (ptr < 0) return Status.InvalidMemoryAccess;
    if (text.length > 0) this.buf.latin1Write(text, ptr, text.length);
    return Status.Ok;
  }

  returnUtf8(text: string, retPtr: number, retLen: number): StatusCode {
    // ASCII (most attribute values: principals, paths, methods) is its own UTF-8: written straight, no encoder copy.
    if (isAscii(text)) return this.returnLatin1(text, retPtr, retLen);
    return this.returnBytes(utf8Encoder.encode(text), retPtr, retLen);
  }
}

function isAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7f) return false;
  return true;
}
