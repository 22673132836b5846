/**
 * Where every HTTP/1 message weft reads ends (RFC 9112 §6.3), for requests and responses, streamed or buffered: the
 * one framing authority. It picks the delimiting (a length, chunked coding, or the connection's close) from a parsed
 * head, says how far through the body the bytes seen so far reach, and which of them may be forwarded (trailer field
 * lines never are). The head parser rejects heads whose framing is ambiguous before this is asked; the bytes
 * themselves are moved by the caller, which ends the connection on any framing error.
 */
import { ChunkedScanner } from './chunked-scanner.js';
import type { RequestHead, ResponseHead } from './http1-head-parser.js';

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

  /**
   * A request's body (RFC 9112 §6.3 rules 4–6): chunked when the head said so (the parser accepted only a lone, final
   * `chunked`), else its content-length, else none — a request is never delimited by close.
   */
  static forRequest(head: RequestHead): BodyFraming {
    if (head.chunked) return BodyFraming.chunked();
    return BodyFraming.length(head.contentLength > 0 ? head.contentLength : 0);
  }

  /**
   * A response's body (RFC 9112 §6.3 rules 1–7): none for HEAD, 1xx, 204 and 304 whatever the head says (extra
   * bytes are then an overrun, and the connection is not reused); chunked; a content-length; else until close.
   */
  static forResponse(request: RequestHead, res: ResponseHead): BodyFraming {
    if (request.method === 'HEAD' || res.status < 200 || res.status === 204 || res.status === 304) return BodyFraming.length(0);
    if (res.chunked) return BodyFraming.chunked();
    if (res.contentLength >= 0) return BodyFraming.length(res.contentLength);
    return BodyFraming.untilClose();
  }

  /**
   * Why the chunked body starting at buf[start] is already broken in the bytes at hand, or undefined. Run on the bytes
   * that came with a request head, before anything is forwarded: a body whose framing fails there is refused whole,
   * and no byte of that request reaches the upstream. (Bytes that arrive later fail mid-stream, and the upstream
   * connection is dropped before the request is complete.)
   */
  static brokenChunkedBody(buf: Buffer, start: number): string | undefined {
    const scanner = new ChunkedScanner();
    return scanner.feed(buf, start, buf.length) === -2 ? scanner.error : undefined;
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

  /**
   * The bytes of chunk[start, end) — the range the last take() consumed — that may be forwarded: all of them, or,
   * once a chunked body reached its trailer section, all but the trailer field lines. RFC 9112 §7.1.2 lets a recipient
   * discard trailer fields; weft does, as Envoy and nginx do by default, so that no field a filter never saw (a trailer
   * `x-user` that an origin merges into its headers, say) reaches the other side.
   */
  forwardable(chunk: Buffer, start: number, end: number): Buffer {
    const s = this.scanner;
    if (s === null || s.heldFrom < 0) return start === 0 && end === chunk.length ? chunk : chunk.subarray(start, end);
    const before = chunk.subarray(start, s.heldFrom);
    const after = chunk.subarray(s.heldTo, end);
    if (after.length === 0) return before;
    return before.length === 0 ? after : Buffer.concat([before, after]);
  }
}
