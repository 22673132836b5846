/** How one HTTP/1 message body is delimited (RFC 9112 §6.3) — a length, chunked coding, or the connection's close — and how far through it the bytes seen so far reach; the bytes themselves are forwarded by the caller. */
import { ChunkedScanner } from './chunked-scanner.js';

export class BodyFraming {
  /** Bytes still expected under a length; unused for chunked and close-delimited bodies. */
  #remaining: number;
  /** Non-null for chunked coding. */
  readonly scanner: ChunkedScanner | null;
  /** The body runs until the sender closes the connection (a response without length or chunking). */
  readonly untilClose: boolean;

  private constructor(remaining: number, scanner: ChunkedScanner | null, untilClose: boolean) {
    this.#remaining = remaining;
    this.scanner = scanner;
    this.untilClose = untilClose;
  }

  /** A body of exactly `length` bytes (0: no body). */
  static length(length: number): BodyFraming {
    return new BodyFraming(length, null, false);
  }

  static chunked(): BodyFraming {
    return new BodyFraming(0, new ChunkedScanner(), false);
  }

  static untilClose(): BodyFraming {
    return new BodyFraming(0, null, true);
  }

  get complete(): boolean {
    if (this.scanner !== null) return this.scanner.done;
    return !this.untilClose && this.#remaining === 0;
  }

  /** Why chunked framing failed, after take() answered -1. */
  get error(): string {
    return this.scanner?.error ?? '';
  }

  /**
   * Consumes the body bytes of chunk[start, length): returns where the body stops inside the chunk (chunk.length when
   * every byte belongs to it), or -1 when the chunked framing is invalid. `onData` receives decoded chunk data.
   */
  take(chunk: Buffer, start: number, onData?: (data: Buffer) => void): number {
    const end = chunk.length;
    if (this.scanner !== null) {
      const r = this.scanner.feed(chunk, start, end, onData);
      return r === -2 ? -1 : r === -1 ? end : r;
    }
    if (this.untilClose) return end;
    const take = Math.min(this.#remaining, end - start);
    this.#remaining -= take;
    return start + take;
  }
}
