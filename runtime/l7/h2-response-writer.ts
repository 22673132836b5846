/**
 * Gets one committed upstream response to an h2c client: the response filters (headers; bodies streamed past them or
 * collected whole up to l7.maxBufferedBodyBytes; trailers), backpressure both ways, and the trailers gRPC needs.
 * Which attempt, retries and accounting stay with the exchange (ResponseOwner).
 */
import http2 from 'node:http2';
import type { HeaderList } from './header-list.js';
import { addOutgoing } from './h2-headers.js';
import type { UpstreamAttempt } from './h2-upstream-attempt.js';
import { observeBody, onResponseBodyHook, onResponseTrailersHook, runFilterHook, runResponseHeaders, type FilterStatus, type L7FilterStream, type LocalReply } from './l7-filter.js';
import { L7_ERROR, localReply } from './local-reply.js';

const { NGHTTP2_INTERNAL_ERROR } = http2.constants;
/** Body bytes that may wait while response-header filters run before the upstream is paused. */
const QUEUE_BYTES = 64 * 1024;

export interface ResponseOwner {
  /** Continues with `next` when a filter status says so, answers locally otherwise (also after a pause). */
  settle(status: FilterStatus, next: () => void): void;
  reply(reply: LocalReply): void;
  currentAttempt(): UpstreamAttempt | undefined;
  /** A whole-body filter's replacement, if one was made. */
  replacedResponseBody(): Buffer | undefined;
}

/** The response side of an exchange's filter chain. */
export interface ResponseFilters {
  readonly streams: readonly L7FilterStream[];
  /** A filter reads whole bodies. */
  readonly whole: boolean;
  /** Filters observe streamed chunks. */
  readonly chunkHooks: boolean;
  readonly trailerHooks: boolean;
}

export class H2ResponseWriter {
  headSent = false;
  /** The end of the response went to the client. */
  ended = false;
  bytes = 0;
  trailers: HeaderList | undefined;
  #mode: 'queue' | 'whole' | 'stream' = 'queue';
  #queue: Buffer[] = [];
  #queueBytes = 0;
  #upstreamEnded = false;
  #upPaused = false;

  constructor(
    readonly stream: http2.ServerHttp2Stream,
    readonly owner: ResponseOwner,
    readonly filters: ResponseFilters,
    /** The status the client gets: the upstream's, unless a filter set :status. */
    public status: number,
    readonly headers: HeaderList,
    readonly endStream: boolean,
    /** Only gRPC-style exchanges carry trailers; waiting for them otherwise would end plain responses with an extra frame. */
    readonly wantsTrailers: boolean,
    readonly limit: number,
  ) {}

  /** Runs the response-header filters, then sends the head (or starts collecting the body). */
  start(): void {
    const { streams } = this.filters;
    if (streams.length === 0) return this.#afterHeaders();
    const status = runResponseHeaders(streams, this.status, this.headers, this.endStream);
    // Only a paused filter stops the upstream; the queue bound covers the synchronous case.
    if (status instanceof Promise) this.#pauseUpstream();
    this.owner.settle(status, () => {
      this.#resumeUpstream();
      this.#afterHeaders();
    });
  }

  data(chunk: Buffer): void {
    if (this.#mode === 'stream') return this.#write(chunk);
    this.#queue.push(chunk);
    this.#queueBytes += chunk.length;
    if (this.#mode === 'whole') {
      if (this.#queueBytes > this.limit) this.#tooLarge();
    } else if (this.#queueBytes > QUEUE_BYTES) this.#pauseUpstream();
  }

  /** Everything came from the upstream. */
  end(): void {
    this.#upstreamEnded = true;
    if (this.#mode === 'stream') this.#finish();
    else if (this.#mode === 'whole') this.#runWholeBody();
  }

  #afterHeaders(): void {
    if (this.filters.whole && !this.endStream) {
      this.#mode = 'whole';
      this.#resumeUpstream();
      if (this.#queueBytes > this.limit) return this.#tooLarge();
      if (this.#upstreamEnded) this.#runWholeBody();
      return;
    }
    this.#sendHead(this.endStream);
    this.#mode = 'stream';
    const queued = this.#queue;
    this.#queue = [];
    this.#queueBytes = 0;
    for (const c of queued) this.#write(c);
    this.#resumeUpstream();
    if (this.#upstreamEnded) this.#finish();
  }

  #sendHead(endStream: boolean): void {
    const { stream } = this;
    if (stream.destroyed) return;
    const out = addOutgoing({ ':status': this.status }, this.headers);
    this.headSent = true;
    if (endStream) {
      this.ended = true;
      stream.respond(out, { endStream: true });
      return;
    }
    stream.respond(out, { waitForTrailers: this.wantsTrailers });
    if (!this.wantsTrailers) return;
    stream.once('wantTrailers', () => {
      try {
        stream.sendTrailers(this.trailers === undefined ? {} : addOutgoing({}, this.trailers));
      } catch {
        stream.close(NGHTTP2_INTERNAL_ERROR);
      }
    });
  }

  #write(c: Buffer): void {
    if (c.length === 0) return;
    this.bytes += c.length;
    if (this.filters.chunkHooks) observeBody(this.filters.streams, onResponseBodyHook, [c], false);
    if (!this.stream.write(c) && !this.#upPaused) {
      this.#pauseUpstream();
      this.stream.once('drain', () => this.#resumeUpstream());
    }
  }

  /** Trailers through the filters, then the end (and the trailers) to the client. */
  #finish(): void {
    const end = (): void => {
      if (this.stream.destroyed || this.ended) return;
      this.ended = true;
      this.stream.end();
    };
    const t = this.trailers;
    // Body filters hear the end of a body that has no trailers (trailers end it for them otherwise).
    if (t === undefined && this.bytes > 0 && this.filters.chunkHooks) observeBody(this.filters.streams, onResponseBodyHook, [], true);
    if (t === undefined || !this.filters.trailerHooks) return end();
    this.owner.settle(runFilterHook(this.filters.streams, 0, onResponseTrailersHook, t), end);
  }

  #runWholeBody(): void {
    const body = this.#queueBytes === 0 ? Buffer.alloc(0) : this.#queue.length === 1 ? this.#queue[0]! : Buffer.concat(this.#queue, this.#queueBytes);
    this.#queue = [];
    this.#queueBytes = 0;
    const send = (): void => {
      if (this.stream.destroyed) return;
      const final = this.owner.replacedResponseBody() ?? body;
      if (this.headers.has('content-length')) this.headers.set('content-length', String(final.length));
      const empty = final.length === 0 && (this.trailers === undefined || !this.wantsTrailers);
      this.#sendHead(empty);
      if (empty) return;
      this.bytes += final.length;
      this.ended = true;
      this.stream.end(final);
    };
    const afterBody = (): void => {
      const t = this.trailers;
      if (t === undefined || !this.filters.trailerHooks) return send();
      this.owner.settle(runFilterHook(this.filters.streams, 0, onResponseTrailersHook, t), send);
    };
    // Filters may edit the headers in their body callbacks: the headers are still unsent and go out after them.
    if (body.length === 0) return afterBody();
    this.owner.settle(runFilterHook(this.filters.streams, 0, onResponseBodyHook, body, true), afterBody);
  }

  #tooLarge(): void {
    this.#queue = [];
    this.#queueBytes = 0;
    this.owner.reply(localReply(500, L7_ERROR.bodyTooLarge, 'UPE', 'response body exceeds the buffering limit'));
  }

  #pauseUpstream(): void {
    if (this.#upPaused) return;
    this.#upPaused = true;
    this.owner.currentAttempt()?.pause();
  }

  #resumeUpstream(): void {
    if (!this.#upPaused) return;
    this.#upPaused = false;
    this.owner.currentAttempt()?.resume();
  }
}
