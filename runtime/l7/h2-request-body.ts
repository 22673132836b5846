/**
 * The request body of one h2c stream on its way upstream: queued until an attempt takes it, kept (up to
 * RETRY_BUFFER_BYTES) so a retry or a mirror can send it again, or collected whole (up to l7.maxBufferedBodyBytes)
 * for filters that buffer; the client is paused while too much waits, and HTTP/2 flow control does the rest.
 * What filters do with it stays with the exchange (RequestBodyOwner).
 */
import type http2 from 'node:http2';
import type { HeaderList } from './header-list.js';
import { headerListFrom } from './h2-headers.js';
import type { UpstreamAttempt } from './h2-upstream-attempt.js';
import { RETRY_BUFFER_BYTES } from './retry-policy.js';
import { END_OF_BODY } from './l7-filter.js';

/** Body bytes that may wait for an attempt (filters running, a paused filter) before the client is paused. */
const QUEUE_BYTES = 64 * 1024;

export interface RequestBodyOwner {
  /** A streamed chunk passing by (observe-only body filters); `end` once, with no bytes, when a body ends without trailers. */
  onStreamedChunk(chunk: Buffer, end: boolean): void;
  /** Trailers after a streamed body; a Promise holds the end of the upstream request until filters are through. */
  onStreamedTrailers(trailers: HeaderList): Promise<void> | undefined;
  /** A body collected whole is complete. */
  onWholeBody(): void;
  onTooLarge(): void;
  /** The attempt being fed, if any. */
  currentAttempt(): UpstreamAttempt | undefined;
}

function concat(parts: Buffer[], total: number): Buffer {
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts, total);
}

export class H2RequestBody {
  /** The client sent (or is sending) a body or trailers; false for a request that ended with its headers. */
  readonly present: boolean;
  complete: boolean;
  bytes = 0;
  trailers: HeaderList | undefined;
  /** After whole-body filters: what every attempt sends (the filters' replacement, or the body as it came). */
  final: Buffer | undefined;
  #whole = false;
  #stopped = false;
  #queue: Buffer[] = [];
  #queueBytes = 0;
  #retained: Buffer[] | null = [];
  #retainedBytes = 0;
  #trailersReady: Promise<void> | undefined;
  #paused = false;
  /** An attempt already consumed the queue: the next one replays the retained copy. */
  #replay = false;

  constructor(
    readonly stream: http2.ServerHttp2Stream,
    readonly owner: RequestBodyOwner,
    readonly limit: number,
  ) {
    this.present = !stream.endAfterHeaders;
    this.complete = !this.present;
    if (!this.present) return;
    stream.on('data', (c: Buffer) => this.#onData(c));
    stream.on('trailers', (t: http2.IncomingHttpHeaders) => this.#onTrailers(t));
    stream.on('end', () => this.#onEnd());
  }

  /** Collect the body whole for filters (call before any data event, i.e. in the tick the stream arrived). */
  collectWhole(): void {
    this.#whole = true;
    this.#retained = null;
  }

  get collectingWhole(): boolean {
    return this.#whole;
  }

  /** The exchange is over: later bytes are only counted. */
  stop(): void {
    this.#stopped = true;
  }

  /** The collected body, handed over once. */
  takeWhole(): Buffer {
    const body = this.#queueBytes === 0 ? Buffer.alloc(0) : concat(this.#queue, this.#queueBytes);
    this.#queue = [];
    this.#queueBytes = 0;
    return body;
  }

  /** The whole request can be sent again (retry): it is complete and nothing of it was let go. */
  get replayable(): boolean {
    return this.complete && (this.bytes === 0 || this.#retained !== null || this.final !== undefined);
  }

  /** Some body went upstream: after a reset, only idempotent requests may go again. */
  get sent(): boolean {
    return this.bytes > 0 || (this.final?.length ?? 0) > 0;
  }

  /** The body for a shadow copy: undefined for none, null when it is no longer at hand. */
  copy(): Buffer | undefined | null {
    if (this.final !== undefined) return this.final;
    if (this.bytes === 0) return undefined;
    if (this.#retained === null || !this.complete) return null;
    return concat(this.#retained, this.#retainedBytes);
  }

  /** Sends the body to a new attempt: the final or retained body, or what queued so far with the rest to follow. */
  feed(a: UpstreamAttempt): void {
    if (!this.present) return;
    if (this.final !== undefined) {
      if (this.final.length > 0) a.write(this.final);
      return this.#endAttempt(a);
    }
    const parts = this.#replay ? (this.#retained ?? []) : this.#queue;
    this.#replay = true;
    for (const c of parts) a.write(c);
    this.#queue = [];
    this.#queueBytes = 0;
    if (this.complete) this.#endAttempt(a);
    else this.resume();
  }

  /** The attempt (or the queue) takes data again. */
  resume(): void {
    if (!this.#paused) return;
    this.#paused = false;
    this.stream.resume();
  }

  #pause(): void {
    if (this.#paused) return;
    this.#paused = true;
    this.stream.pause();
  }

  #onData(c: Buffer): void {
    this.bytes += c.length;
    if (this.#stopped) return;
    if (this.#whole) {
      if (this.bytes > this.limit) return this.owner.onTooLarge();
      this.#queue.push(c);
      this.#queueBytes += c.length;
      return;
    }
    if (this.#retained !== null) {
      this.#retainedBytes += c.length;
      if (this.#retainedBytes > RETRY_BUFFER_BYTES) this.#retained = null;
      else this.#retained.push(c);
    }
    this.owner.onStreamedChunk(c, false);
    const a = this.owner.currentAttempt();
    if (a !== undefined) {
      if (!a.write(c)) this.#pause();
      return;
    }
    this.#queue.push(c);
    this.#queueBytes += c.length;
    if (this.#queueBytes > QUEUE_BYTES) this.#pause();
  }

  #onTrailers(raw: http2.IncomingHttpHeaders): void {
    this.trailers = headerListFrom(raw);
    // Whole bodies run their trailers after the body filters; streamed ones run them now.
    if (!this.#stopped && !this.#whole) this.#trailersReady = this.owner.onStreamedTrailers(this.trailers);
  }

  #onEnd(): void {
    this.complete = true;
    if (this.#stopped) return;
    if (this.#whole) return this.owner.onWholeBody();
    // Trailers end a body for the filters themselves; otherwise they hear the end here (not for a body-less request).
    if (this.bytes > 0 && this.trailers === undefined) this.owner.onStreamedChunk(END_OF_BODY, true);
    const a = this.owner.currentAttempt();
    if (a !== undefined) this.#endAttempt(a);
  }

  /** Ends the attempt's request once the client's trailers (if a filter holds them) are through. */
  #endAttempt(a: UpstreamAttempt): void {
    const ready = this.#trailersReady;
    if (ready === undefined) return a.end(this.trailers);
    void ready.then(() => {
      if (!this.#stopped && this.owner.currentAttempt() === a) a.end(this.trailers);
    });
  }
}
