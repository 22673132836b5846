/**
 * weft's own wasi:io@0.2 (error, poll, streams) for function instances, inside the worker. Streams are backed by
 * in-worker byte queues that the main thread fills and drains by message; blocking calls pump those messages
 * (`Pump`) until they can proceed. jco's bindings check resources with instanceof, so wasi:http and wasi:cli hand
 * out these same classes.
 */

/** Waits for one message from the main thread (at most `timeoutMs`) and applies it; the only way time passes in a blocking call. */
export type Pump = (timeoutMs: number) => void;

let pump: Pump = () => {
  throw new Error('wasi-io: no pump installed');
};

export function installPump(p: Pump): void {
  pump = p;
}

const symbolDispose = Symbol.dispose;

/**
 * The error case of a WIT `result`: jco's bindings turn a thrown value with an own `payload` into `err(payload)`
 * (any other Error thrown by the host is a trap), so every expected failure is thrown as one of these.
 */
export class ResultError extends Error {
  readonly payload: unknown;
  constructor(payload: unknown) {
    super('wasi result error');
    this.payload = payload;
  }
}

/** wasi:io/error.error */
export class IoError {
  readonly #message: string;
  constructor(message: string) {
    this.#message = message;
  }
  toDebugString(): string {
    return this.#message;
  }
  [symbolDispose](): void {}
}

/** wasi:io/poll.pollable: ready when `isReady` says so or its monotonic deadline (ns) has passed. */
export class Pollable {
  readonly #isReady: () => boolean;
  readonly deadlineNs: bigint | undefined;

  constructor(isReady: () => boolean, deadlineNs?: bigint) {
    this.#isReady = isReady;
    this.deadlineNs = deadlineNs;
  }

  ready(): boolean {
    if (this.deadlineNs !== undefined && process.hrtime.bigint() >= this.deadlineNs) return true;
    return this.#isReady();
  }

  block(): void {
    while (!this.ready()) pump(waitMs([this]));
  }

  [symbolDispose](): void {}
}

function waitMs(list: readonly Pollable[]): number {
  let next: bigint | undefined;
  for (const p of list) if (p.deadlineNs !== undefined && (next === undefined || p.deadlineNs < next)) next = p.deadlineNs;
  if (next === undefined) return Infinity;
  const ms = Number(next - process.hrtime.bigint()) / 1e6;
  return ms <= 0 ? 0 : Math.ceil(ms);
}

/** wasi:io/poll.poll: indexes of the ready pollables, waiting until at least one is. */
export function poll(list: Pollable[]): Uint32Array {
  if (list.length === 0) throw new Error('poll: empty list');
  for (;;) {
    const ready: number[] = [];
    list.forEach((p, i) => p.ready() && ready.push(i));
    if (ready.length > 0) return new Uint32Array(ready);
    pump(waitMs(list));
  }
}

/** The bytes behind an input stream: filled by messages, read by the guest. */
export class ByteQueue {
  readonly #chunks: Uint8Array[] = [];
  #size = 0;
  ended = false;
  failure: string | undefined;
  /** Told how many bytes the guest took (credit back to the sender). */
  onConsume: ((bytes: number) => void) | undefined;

  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.#chunks.push(chunk);
    this.#size += chunk.length;
  }

  get size(): number {
    return this.#size;
  }

  take(max: number): Uint8Array {
    const first = this.#chunks[0];
    if (first === undefined || max <= 0) return new Uint8Array(0);
    let out: Uint8Array;
    if (first.length <= max) {
      this.#chunks.shift();
      out = first;
    } else {
      out = first.subarray(0, max);
      this.#chunks[0] = first.subarray(max);
    }
    this.#size -= out.length;
    this.onConsume?.(out.length);
    return out;
  }
}

type StreamError = { tag: 'closed' } | { tag: 'last-operation-failed'; val: IoError };

/** wasi:io/streams.input-stream */
export class InputStream {
  readonly #queue: ByteQueue;

  constructor(queue: ByteQueue) {
    this.#queue = queue;
  }

  #end(): never {
    const f = this.#queue.failure;
    throw new ResultError((f === undefined ? { tag: 'closed' } : { tag: 'last-operation-failed', val: new IoError(f) }) satisfies StreamError);
  }

  read(len: bigint): Uint8Array {
    const q = this.#queue;
    if (q.size === 0 && (q.ended || q.failure !== undefined)) this.#end();
    return q.take(Number(len > 1_048_576n ? 1_048_576n : len));
  }

  blockingRead(len: bigint): Uint8Array {
    const q = this.#queue;
    while (q.size === 0 && !q.ended && q.failure === undefined) pump(Infinity);
    return this.read(len);
  }

  skip(len: bigint): bigint {
    return BigInt(this.read(len).length);
  }

  blockingSkip(len: bigint): bigint {
    return BigInt(this.blockingRead(len).length);
  }

  subscribe(): Pollable {
    const q = this.#queue;
    return new Pollable(() => q.size > 0 || q.ended || q.failure !== undefined);
  }

  [symbolDispose](): void {}
}

/** A chunk whose whole buffer may be handed on (sinks transfer it): a view into a larger queued chunk is copied. */
function owned(bytes: Uint8Array): Uint8Array {
  return bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength ? bytes : bytes.slice();
}

/** Where an output stream's bytes go, and how many more it takes now. */
export interface ByteSink {
  write(chunk: Uint8Array): void;
  /** Bytes the sink accepts before the writer must wait. */
  credit(): number;
  /** Set when the other side went away. */
  readonly failure: string | undefined;
}

/** wasi:io/streams.output-stream */
export class OutputStream {
  readonly #sink: ByteSink;
  closed = false;

  constructor(sink: ByteSink) {
    this.#sink = sink;
  }

  #check(): void {
    if (this.closed) throw new ResultError({ tag: 'closed' } satisfies StreamError);
    const f = this.#sink.failure;
    if (f !== undefined) throw new ResultError({ tag: 'last-operation-failed', val: new IoError(f) } satisfies StreamError);
  }

  checkWrite(): bigint {
    this.#check();
    return BigInt(Math.max(0, this.#sink.credit()));
  }

  write(contents: Uint8Array): void {
    this.#check();
    // jco lends the guest's memory view for the call only; the sink may keep the bytes, so copy.
    if (contents.length > 0) this.#sink.write(contents.slice());
  }

  blockingWriteAndFlush(contents: Uint8Array): void {
    let off = 0;
    while (off < contents.length) {
      this.#check();
      const credit = this.#sink.credit();
      if (credit <= 0) {
        pump(Infinity);
        continue;
      }
      const n = Math.min(credit, contents.length - off, 65_536);
      this.#sink.write(contents.slice(off, off + n));
      off += n;
    }
    this.#check();
  }

  flush(): void {
    this.#check();
  }

  blockingFlush(): void {
    this.#check();
  }

  subscribe(): Pollable {
    const sink = this.#sink;
    return new Pollable(() => this.closed || sink.failure !== undefined || sink.credit() > 0);
  }

  writeZeroes(len: bigint): void {
    this.write(new Uint8Array(Number(len)));
  }

  blockingWriteZeroesAndFlush(len: bigint): void {
    this.blockingWriteAndFlush(new Uint8Array(Number(len)));
  }

  /** Host to host: the bytes never enter guest memory, so a large body costs the guest nothing. */
  splice(src: InputStream, len: bigint): bigint {
    this.#check();
    const credit = BigInt(Math.max(0, this.#sink.credit()));
    const bytes = src.read(len < credit ? len : credit);
    if (bytes.length > 0) this.#sink.write(owned(bytes));
    return BigInt(bytes.length);
  }

  blockingSplice(src: InputStream, len: bigint): bigint {
    this.#check();
    while (this.#sink.credit() <= 0) {
      pump(Infinity);
      this.#check();
    }
    const credit = BigInt(this.#sink.credit());
    const bytes = src.blockingRead(len < credit ? len : credit);
    if (bytes.length > 0) this.#sink.write(owned(bytes));
    return BigInt(bytes.length);
  }

  [symbolDispose](): void {}
}
