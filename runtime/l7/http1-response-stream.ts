/**
 * The response side of an HTTP/1 exchange once its final head was accepted: framing decided from the head and the
 * request, the head written (or held while a filter buffers the body), and the body carried to the client — streamed
 * with backpressure, decoded for an HTTP/1.0 client, or collected for body filters. Retries, filters on headers and
 * the upstream connection's fate stay with the exchange, which hears back through ResponseStreamOwner.
 */
import type { Http1Transport } from './http1-transport.js';
import type { RequestHead, ResponseHead } from './http1-head-parser.js';
import { observeBody, onResponseBodyHook, type L7FilterStream } from './l7-filter.js';
import { HeaderList } from './header-list.js';
import { BodyFraming } from './http1-body-framing.js';
import { appendedFieldLines, responseHeadStart } from './http1-head-writer.js';
import { splicedHead } from './http1-head-splice.js';

export interface ResponseStreamOwner {
  /** The body ended where its framing said. */
  onResponseComplete(): void;
  /** The upstream's chunked coding is invalid. */
  onResponseInvalid(reason: string): void;
  /** A body collected for filters outgrew l7.maxBufferedBodyBytes. */
  onResponseTooLarge(): void;
  /** A collected body is complete: run the body filters, then call sendCollected(). */
  onResponseCollected(body: Buffer): void;
  /** The client stopped reading: pause the upstream until the downstream drains. */
  pauseUpstream(): void;
}

/** Bodies up to this size that arrived with their head leave in the same write as the head. */
const MERGE_LIMIT = 16 * 1024;

export class Http1ResponseStream {
  readonly framing: BodyFraming;
  /** Chunked coding decoded for an HTTP/1.0 client, which then reads until the connection closes. */
  readonly dechunk: boolean;
  /** The client connection cannot be kept after this response (close-delimited or decoded body). */
  readonly closeAfter: boolean;
  /** Bytes written to the client, head included. */
  bytes = 0;
  /** The head went out (nothing can be retried or answered locally any more). */
  started = false;
  /** The upstream sent bytes past the end of the body: its connection cannot be trusted with the next request. */
  overran = false;
  readonly #io: Http1Transport;
  readonly #owner: ResponseStreamOwner;
  readonly #hooks: readonly L7FilterStream[];
  readonly #collect: boolean;
  readonly #maxCollected: number;
  /** Made on the first piece collected: most responses are never collected. */
  #collected: Buffer[] | undefined = undefined;
  #collectedBytes = 0;
  /** The head of a collected body, kept unserialized until the body filters are done with it. */
  #held: { res: ResponseHead; headers: HeaderList; connection: string | undefined } | undefined;

  /**
   * `hooks`: streams with onResponseBody, told about every piece; `collect`: a filter wants the whole body first
   * (ignored for an empty body).
   */
  constructor(request: RequestHead, res: ResponseHead, io: Http1Transport, owner: ResponseStreamOwner, hooks: readonly L7FilterStream[], collect: boolean, maxCollected: number) {
    this.#io = io;
    this.#owner = owner;
    this.#hooks = hooks;
    this.#maxCollected = maxCollected;
    let dechunk = false;
    let closeAfter = false;
    this.framing = BodyFraming.forResponse(request, res);
    // An HTTP/1.0 client cannot read chunked coding: decode and delimit by close instead.
    if (this.framing.scanner !== null && request.minor === 0) dechunk = closeAfter = true;
    else if (this.framing.untilClose) closeAfter = true;
    this.dechunk = dechunk;
    this.closeAfter = closeAfter;
    this.#collect = collect && !this.framing.complete;
  }

  /**
   * Writes the head (status line and the fields: `edited` as filters and routes left them, or the upstream's own when
   * undefined; then framing and connection fields) and any body bytes that came with it. A collected body holds the head
   * back: it is serialized in sendCollected, after the body filters, so header edits they make still reach the client
   * (Envoy lets on_response_body edit headers that were not sent yet).
   */
  start(res: ResponseHead, edited: HeaderList | undefined, connection: string | undefined, chunk: Buffer, bodyAt: number): void {
    const hasBody = bodyAt < chunk.length;
    if (this.#collect) {
      this.#held = { res, headers: edited ?? new HeaderList(res.headers), connection };
      if (hasBody) this.forward(chunk, bodyAt);
      return;
    }
    this.started = true;
    const raw = res.verbatim;
    if (raw !== undefined && connection === undefined && this.framing.scanner === null) {
      if (edited === undefined) return this.#startVerbatim(raw, '', chunk, bodyAt);
      // The upstream's bytes with the original fields filters removed cut out and those they replaced rewritten in
      // place, then the fields they added; written anew when an edit touches a field the proxy drops or re-creates.
      const spliced = splicedHead(raw, edited, false);
      const appended = spliced === undefined ? undefined : appendedFieldLines(edited, false, edited.addedFrom);
      if (appended !== undefined) return this.#startVerbatim(spliced!, appended, chunk, bodyAt);
    }
    let out = responseHeadStart(res, edited ?? new HeaderList(res.headers));
    if (this.framing.scanner !== null && !this.dechunk) out += 'transfer-encoding: chunked\r\n';
    else if (res.contentLength >= 0) out += `content-length: ${res.contentLength}\r\n`;
    if (connection !== undefined) out += `connection: ${connection}\r\n`;
    out += '\r\n';
    this.bytes += out.length;
    if (hasBody && !this.dechunk && chunk.length - bodyAt <= MERGE_LIMIT && this.#hooks.length === 0) {
      // The common small response: head and body leave in one write.
      const end = this.framing.take(chunk, bodyAt);
      // A body whose framing broke in the first read: nothing went out yet, so the client gets a 502 instead.
      if (end === -1) {
        this.started = false;
        this.bytes -= out.length;
        return this.#owner.onResponseInvalid(`invalid chunked response: ${this.framing.error}`);
      }
      const body = this.framing.forwardable(chunk, bodyAt, end);
      this.bytes += body.length;
      this.#io.writeHead(out, body);
      if (end < chunk.length) this.overran = true;
      if (this.framing.complete) this.#owner.onResponseComplete();
      return;
    }
    this.#io.write(out);
    if (hasBody) this.forward(chunk, bodyAt);
    else if (this.framing.complete) this.#owner.onResponseComplete();
  }

  /**
   * The upstream's head goes out as it came (nothing to drop, re-create or re-frame: see MessageHead.verbatim), or as
   * spliced, with the `appended` field lines filters added, in one write with the body bytes that followed it in the
   * same read, chunk[bodyAt, length); with nothing appended and the body right behind the head in memory, as it is after
   * one read, that write copies nothing, and when head and body are the whole chunk it is the chunk itself. Filters
   * that watch the body see it through forward(), after the head.
   */
  #startVerbatim(raw: Buffer, appended: string, chunk: Buffer, bodyAt: number): void {
    const bodyBytes = chunk.length - bodyAt;
    if (bodyBytes === 0 || bodyBytes > MERGE_LIMIT || this.#hooks.length > 0) {
      this.bytes += raw.length + appended.length;
      if (appended === '') this.#io.write(raw);
      else this.#io.writeSpliced(raw, appended, undefined);
      if (bodyBytes !== 0) this.forward(chunk, bodyAt);
      else if (this.framing.complete) this.#owner.onResponseComplete();
      return;
    }
    // Not chunked here (see start), so this only counts bytes against the length.
    const end = this.framing.take(chunk, bodyAt);
    const take = end - bodyAt;
    if (end < chunk.length) this.overran = true;
    if (appended !== '') {
      this.bytes += raw.length + appended.length + take;
      this.#io.writeSpliced(raw, appended, bodyAt === 0 && end === chunk.length ? chunk : chunk.subarray(bodyAt, end));
      if (this.framing.complete) this.#owner.onResponseComplete();
      return;
    }
    let out: Buffer;
    if (chunk.buffer === raw.buffer && chunk.byteOffset + bodyAt === raw.byteOffset + raw.length) {
      out = raw.byteOffset === chunk.byteOffset && end === chunk.length ? chunk : Buffer.from(raw.buffer, raw.byteOffset, raw.length + take);
    } else {
      out = Buffer.allocUnsafe(raw.length + take);
      chunk.copy(out, raw.copy(out, 0), bodyAt, end);
    }
    this.bytes += out.length;
    this.#io.write(out);
    if (this.framing.complete) this.#owner.onResponseComplete();
  }

  /** Body bytes from chunk[start, length) as they arrive from the upstream. */
  forward(chunk: Buffer, start: number): void {
    const framing = this.framing;
    // Filters and an HTTP/1.0 client get content; a chunked body stays coded for an HTTP/1.1 client.
    const decode = framing.scanner !== null && (this.dechunk || this.#collect || this.#hooks.length > 0);
    let decoded: Buffer[] | undefined;
    const end = framing.take(chunk, start, decode ? (d) => (decoded ??= []).push(d) : undefined);
    if (end === -1) return this.#owner.onResponseInvalid(`invalid chunked response: ${framing.error}`);
    if (end < chunk.length) this.overran = true;
    const piece = framing.forwardable(chunk, start, end);
    const content = decode ? (decoded ?? []) : [piece];
    if (this.#collect) {
      for (const p of content) {
        this.#collectedBytes += p.length;
        (this.#collected ??= []).push(p);
      }
      if (this.#collectedBytes > this.#maxCollected) return this.#owner.onResponseTooLarge();
      if (framing.complete) {
        const body = Buffer.concat(this.#collected ?? [], this.#collectedBytes);
        this.#collected = undefined;
        this.#owner.onResponseCollected(body);
      }
      return;
    }
    if (this.#hooks.length > 0) observeBody(this.#hooks, onResponseBodyHook, content, framing.complete);
    let ok = true;
    for (const p of this.dechunk ? content : [piece]) {
      if (p.length === 0) continue;
      this.bytes += p.length;
      ok = this.#io.write(p) && ok;
    }
    if (!ok) this.#owner.pauseUpstream();
    if (framing.complete) this.#owner.onResponseComplete();
  }

  /** A close-delimited body ended with the upstream connection: filters watching the body hear its end. */
  endedByClose(): void {
    observeBody(this.#hooks, onResponseBodyHook, [], true);
  }

  /** The held head, serialized now from its header list with the final body's length, and the body (after the body filters ran on a collected body). */
  sendCollected(body: Buffer): void {
    const held = this.#held!;
    this.#held = undefined;
    let head = responseHeadStart(held.res, held.headers);
    if (held.connection !== undefined) head += `connection: ${held.connection}\r\n`;
    head += `content-length: ${body.length}\r\n\r\n`;
    this.started = true;
    this.bytes += head.length + body.length;
    this.#io.writeHead(head, body);
  }
}
