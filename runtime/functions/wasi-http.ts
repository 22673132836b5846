/**
 * weft's own wasi:http@0.2 types and outgoing-handler for function instances, inside the worker. Incoming request
 * bodies and outgoing response bodies stream through wasi-io byte queues and sinks that talk to the main thread;
 * outbound requests are handed to the main thread, which sends them through the mesh (function-outbound.ts).
 */
import type { FromWorker, HeaderPairs } from './function-messages.js';
import { STREAM_WINDOW_BYTES } from './function-messages.js';
import { ByteQueue, InputStream, OutputStream, Pollable, ResultError, type ByteSink } from './wasi-io.js';

const symbolDispose = Symbol.dispose;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Hop-by-hop and framing headers belong to the host's HTTP layer (the wasi:http spec lets hosts forbid them). */
const FORBIDDEN = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'host', 'te']);
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** What the types need from their worker: posting to main and the request the guest is serving. */
export interface HttpWorkerContext {
  post(message: FromWorker, transfer?: ArrayBuffer[]): void;
  currentRequestId(): number;
}

type Method = { tag: string; val?: string };
type Scheme = { tag: 'HTTP' | 'HTTPS' | 'other'; val?: string };

export function methodOf(name: string): Method {
  const lower = name.toLowerCase();
  return ['get', 'head', 'post', 'put', 'delete', 'connect', 'options', 'trace', 'patch'].includes(lower) && name === name.toUpperCase() ? { tag: lower } : { tag: 'other', val: name };
}

function methodName(m: Method): string {
  return m.tag === 'other' ? (m.val ?? 'GET') : m.tag.toUpperCase();
}

function schemeName(s: Scheme | undefined): string {
  return s === undefined ? 'http' : s.tag === 'other' ? (s.val ?? 'http') : s.tag.toLowerCase();
}

export function createWasiHttp(ctx: HttpWorkerContext) {
  class Fields {
    #entries: [string, Uint8Array][] = [];
    immutable = false;

    static fromList(entries: [string, Uint8Array][]): Fields {
      const f = new Fields();
      for (const [n, v] of entries) f.append(n, v);
      return f;
    }

    static locked(pairs: HeaderPairs): Fields {
      const f = new Fields();
      for (const [n, v] of pairs) if (!FORBIDDEN.has(n)) f.#entries.push([n, encoder.encode(v)]);
      f.immutable = true;
      return f;
    }

    #checkWritable(name: string, values: Uint8Array[]): void {
      if (this.immutable) throw new ResultError({ tag: 'immutable' });
      if (!TOKEN.test(name)) throw new ResultError({ tag: 'invalid-syntax' });
      for (const v of values) for (const b of v) if (b === 0 || b === 10 || b === 13) throw new ResultError({ tag: 'invalid-syntax' });
      if (FORBIDDEN.has(name.toLowerCase())) throw new ResultError({ tag: 'forbidden' });
    }

    get(name: string): Uint8Array[] {
      const lower = name.toLowerCase();
      return this.#entries.filter(([n]) => n.toLowerCase() === lower).map(([, v]) => v);
    }

    has(name: string): boolean {
      return this.get(name).length > 0;
    }

    set(name: string, values: Uint8Array[]): void {
      this.#checkWritable(name, values);
      const lower = name.toLowerCase();
      this.#entries = this.#entries.filter(([n]) => n.toLowerCase() !== lower);
      for (const v of values) this.#entries.push([name, v.slice()]);
    }

    delete(name: string): void {
      if (this.immutable) throw new ResultError({ tag: 'immutable' });
      const lower = name.toLowerCase();
      this.#entries = this.#entries.filter(([n]) => n.toLowerCase() !== lower);
    }

    append(name: string, value: Uint8Array): void {
      this.#checkWritable(name, [value]);
      this.#entries.push([name, value.slice()]);
    }

    entries(): [string, Uint8Array][] {
      return this.#entries.map(([n, v]) => [n, v]);
    }

    clone(): Fields {
      const f = new Fields();
      f.#entries = this.#entries.map(([n, v]) => [n, v]);
      return f;
    }

    pairs(): HeaderPairs {
      return this.#entries.map(([n, v]) => [n, decoder.decode(v)]);
    }

    [symbolDispose](): void {}
  }

  class FutureTrailers {
    readonly #queue: ByteQueue;
    #taken = false;
    constructor(queue: ByteQueue) {
      this.#queue = queue;
    }
    subscribe(): Pollable {
      const q = this.#queue;
      return new Pollable(() => q.ended || q.failure !== undefined);
    }
    get(): unknown {
      const q = this.#queue;
      if (!q.ended && q.failure === undefined) return undefined;
      if (this.#taken) return { tag: 'err' };
      this.#taken = true;
      if (q.failure !== undefined) return { tag: 'ok', val: { tag: 'err', val: { tag: 'internal-error', val: q.failure } } };
      // weft hands trailers to the guest as none: the HTTP/1.1 hop to the function carries them in the chunked body only.
      return { tag: 'ok', val: { tag: 'ok', val: undefined } };
    }
    [symbolDispose](): void {}
  }

  class IncomingBody {
    #stream: InputStream | undefined;
    readonly #queue: ByteQueue;
    constructor(queue: ByteQueue) {
      this.#queue = queue;
      this.#stream = new InputStream(queue);
    }
    stream(): InputStream {
      const s = this.#stream;
      if (s === undefined) throw new ResultError(undefined);
      this.#stream = undefined;
      return s;
    }
    static finish(body: IncomingBody): FutureTrailers {
      return new FutureTrailers(body.#queue);
    }
    [symbolDispose](): void {}
  }

  class IncomingRequest {
    readonly #method: string;
    readonly #path: string;
    readonly #scheme: string;
    readonly #authority: string;
    readonly #headers: Fields;
    #body: IncomingBody | undefined;

    constructor(method: string, path: string, scheme: string, authority: string, headers: HeaderPairs, body: ByteQueue) {
      this.#method = method;
      this.#path = path;
      this.#scheme = scheme;
      this.#authority = authority;
      this.#headers = Fields.locked(headers);
      this.#body = new IncomingBody(body);
    }
    method(): Method {
      return methodOf(this.#method);
    }
    pathWithQuery(): string {
      return this.#path;
    }
    scheme(): Scheme {
      return this.#scheme === 'https' ? { tag: 'HTTPS' } : this.#scheme === 'http' ? { tag: 'HTTP' } : { tag: 'other', val: this.#scheme };
    }
    authority(): string {
      return this.#authority;
    }
    headers(): Fields {
      return this.#headers;
    }
    consume(): IncomingBody {
      const b = this.#body;
      if (b === undefined) throw new ResultError(undefined);
      this.#body = undefined;
      return b;
    }
    [symbolDispose](): void {}
  }

  /** Response bodies: chunks go to main at once; main acks what the socket took, which bounds what is in flight. */
  class WindowedSink implements ByteSink {
    inFlight = 0;
    failure: string | undefined;
    readonly #send: (chunk: Uint8Array) => void;
    constructor(send: (chunk: Uint8Array) => void) {
      this.#send = send;
    }
    write(chunk: Uint8Array): void {
      this.inFlight += chunk.length;
      this.#send(chunk);
    }
    credit(): number {
      return STREAM_WINDOW_BYTES - this.inFlight;
    }
    ack(bytes: number): void {
      this.inFlight -= bytes;
    }
  }

  class OutgoingBody {
    readonly stream: OutputStream;
    readonly sink: WindowedSink;
    #written = false;
    finished = false;
    readonly #onFinish: () => void;
    constructor(sink: WindowedSink, onFinish: () => void) {
      this.sink = sink;
      this.stream = new OutputStream(sink);
      this.#onFinish = onFinish;
    }
    write(): OutputStream {
      if (this.#written) throw new ResultError(undefined);
      this.#written = true;
      return this.stream;
    }
    static finish(body: OutgoingBody, trailers: Fields | undefined): void {
      if (body.finished) throw new ResultError({ tag: 'internal-error', val: 'body already finished' });
      if (trailers !== undefined && trailers.entries().length > 0) throw new ResultError({ tag: 'internal-error', val: 'weft does not forward response trailers from functions yet' });
      body.finished = true;
      body.stream.closed = true;
      body.#onFinish();
    }
    [symbolDispose](): void {}
  }

  class OutgoingResponse {
    #status = 200;
    readonly #headers: Fields;
    /** The request this response answers, once response-outparam.set named it; body bytes wait until then. */
    target: number | undefined;
    held: { chunks: Uint8Array[]; ended: boolean } = { chunks: [], ended: false };
    readonly sink = new WindowedSink((chunk) => {
      if (this.target === undefined) this.held.chunks.push(chunk);
      else ctx.post({ t: 'res-body', id: this.target, chunk }, [chunk.buffer as ArrayBuffer]);
    });
    readonly outBody = new OutgoingBody(this.sink, () => {
      if (this.target === undefined) this.held.ended = true;
      else ctx.post({ t: 'res-end', id: this.target, complete: true });
    });
    #bodyTaken = false;
    constructor(headers: Fields) {
      headers.immutable = true;
      this.#headers = headers;
    }
    statusCode(): number {
      return this.#status;
    }
    setStatusCode(code: number): void {
      if (code < 100 || code > 999) throw new ResultError(undefined);
      this.#status = code;
    }
    headers(): Fields {
      return this.#headers;
    }
    body(): OutgoingBody {
      if (this.#bodyTaken) throw new ResultError(undefined);
      this.#bodyTaken = true;
      return this.outBody;
    }
  }

  /** The response of the request being served: set once; its head goes to main then, its body as it is written. */
  class ResponseOutparam {
    readonly id: number;
    set_ = false;
    body: OutgoingBody | undefined;
    errored: string | undefined;
    constructor(id: number) {
      this.id = id;
    }
    static set(param: ResponseOutparam, result: { tag: 'ok'; val: OutgoingResponse } | { tag: 'err'; val: { tag: string; val?: unknown } }): void {
      if (param.set_) throw new Error('response-outparam.set called twice');
      param.set_ = true;
      const id = param.id;
      if (result.tag === 'err') {
        param.errored = result.val.tag;
        return;
      }
      const response = result.val;
      param.body = response.outBody;
      ctx.post({ t: 'res-head', id, status: response.statusCode(), headers: response.headers().pairs() });
      response.target = id;
      for (const chunk of response.held.chunks) ctx.post({ t: 'res-body', id, chunk }, [chunk.buffer as ArrayBuffer]);
      if (response.held.ended) ctx.post({ t: 'res-end', id, complete: true });
      response.held = { chunks: [], ended: false };
    }
  }

  class RequestOptions {
    #connect: bigint | undefined;
    #firstByte: bigint | undefined;
    #between: bigint | undefined;
    connectTimeout(): bigint | undefined {
      return this.#connect;
    }
    setConnectTimeout(d: bigint | undefined): void {
      this.#connect = d;
    }
    firstByteTimeout(): bigint | undefined {
      return this.#firstByte;
    }
    setFirstByteTimeout(d: bigint | undefined): void {
      this.#firstByte = d;
    }
    betweenBytesTimeout(): bigint | undefined {
      return this.#between;
    }
    setBetweenBytesTimeout(d: bigint | undefined): void {
      this.#between = d;
    }
  }

  let nextOid = 1;
  /** Outbound exchanges by id: their response queue and request-body sink. */
  const outbound = new Map<number, { sink: WindowedSink; response: FutureIncomingResponse }>();

  class OutgoingRequest {
    #method: Method = { tag: 'get' };
    #scheme: Scheme | undefined;
    #path: string | undefined;
    #authority: string | undefined;
    readonly #headers: Fields;
    readonly oid = nextOid++;
    /** Body bytes (and the end) written before outgoing-handler.handle sent the head; null once sent. */
    held: { chunks: Uint8Array[]; ended: boolean } | null = { chunks: [], ended: false };
    readonly sink = new WindowedSink((chunk) => {
      if (this.held !== null) this.held.chunks.push(chunk);
      else ctx.post({ t: 'out-body', oid: this.oid, chunk }, [chunk.buffer as ArrayBuffer]);
    });
    readonly outBody = new OutgoingBody(this.sink, () => {
      if (this.held !== null) this.held.ended = true;
      else ctx.post({ t: 'out-end', oid: this.oid });
    });
    #bodyTaken = false;
    constructor(headers: Fields) {
      headers.immutable = true;
      this.#headers = headers;
    }
    body(): OutgoingBody {
      if (this.#bodyTaken) throw new ResultError(undefined);
      this.#bodyTaken = true;
      return this.outBody;
    }
    method(): Method {
      return this.#method;
    }
    setMethod(m: Method): void {
      if (m.tag === 'other' && !TOKEN.test(m.val ?? '')) throw new ResultError(undefined);
      this.#method = m;
    }
    pathWithQuery(): string | undefined {
      return this.#path;
    }
    setPathWithQuery(p: string | undefined): void {
      if (p !== undefined && !/^[\x21-\x7e]*$/.test(p)) throw new ResultError(undefined);
      this.#path = p;
    }
    scheme(): Scheme | undefined {
      return this.#scheme;
    }
    setScheme(s: Scheme | undefined): void {
      this.#scheme = s;
    }
    authority(): string | undefined {
      return this.#authority;
    }
    setAuthority(a: string | undefined): void {
      if (a !== undefined && !/^[A-Za-z0-9.\-_[\]:]*$/.test(a)) throw new ResultError(undefined);
      this.#authority = a;
    }
    headers(): Fields {
      return this.#headers;
    }
    describe(): { method: string; scheme: string; authority: string; pathWithQuery: string; headers: HeaderPairs } {
      return { method: methodName(this.#method), scheme: schemeName(this.#scheme), authority: this.#authority ?? '', pathWithQuery: this.#path ?? '/', headers: this.#headers.pairs() };
    }
    [symbolDispose](): void {}
  }

  class IncomingResponse {
    readonly #status: number;
    readonly #headers: Fields;
    #body: IncomingBody | undefined;
    constructor(status: number, headers: HeaderPairs, body: ByteQueue) {
      this.#status = status;
      this.#headers = Fields.locked(headers);
      this.#body = new IncomingBody(body);
    }
    status(): number {
      return this.#status;
    }
    headers(): Fields {
      return this.#headers;
    }
    consume(): IncomingBody {
      const b = this.#body;
      if (b === undefined) throw new ResultError(undefined);
      this.#body = undefined;
      return b;
    }
    [symbolDispose](): void {}
  }

  class FutureIncomingResponse {
    readonly oid: number;
    readonly body = new ByteQueue();
    head: { status: number; headers: HeaderPairs } | undefined;
    error: { code: string; message: string } | undefined;
    #taken = false;
    constructor(oid: number) {
      this.oid = oid;
    }
    subscribe(): Pollable {
      return new Pollable(() => this.head !== undefined || this.error !== undefined);
    }
    get(): unknown {
      if (this.head === undefined && this.error === undefined) return undefined;
      if (this.#taken) return { tag: 'err' };
      this.#taken = true;
      if (this.error !== undefined) return { tag: 'ok', val: { tag: 'err', val: errorCode(this.error.code, this.error.message) } };
      const head = this.head as { status: number; headers: HeaderPairs };
      return { tag: 'ok', val: { tag: 'ok', val: new IncomingResponse(head.status, head.headers, this.body) } };
    }
    [symbolDispose](): void {
      outbound.delete(this.oid);
      ctx.post({ t: 'out-drop', oid: this.oid });
    }
  }

  const outgoingHandler = {
    handle(request: OutgoingRequest, options: RequestOptions | undefined): FutureIncomingResponse {
      const d = request.describe();
      const first = options?.firstByteTimeout();
      const response = new FutureIncomingResponse(request.oid);
      const oid = request.oid;
      response.body.onConsume = (bytes) => ctx.post({ t: 'out-ack', oid, bytes });
      outbound.set(oid, { sink: request.sink, response });
      ctx.post({ t: 'out-req', id: ctx.currentRequestId(), oid, ...d, timeoutMs: first === undefined ? undefined : Number(first / 1_000_000n) });
      const held = request.held;
      request.held = null;
      for (const chunk of held?.chunks ?? []) ctx.post({ t: 'out-body', oid, chunk }, [chunk.buffer as ArrayBuffer]);
      if (held?.ended === true) ctx.post({ t: 'out-end', oid });
      return response;
    },
  };

  const types = {
    Fields,
    FutureTrailers,
    IncomingBody,
    IncomingRequest,
    IncomingResponse,
    FutureIncomingResponse,
    OutgoingBody,
    OutgoingRequest,
    OutgoingResponse,
    RequestOptions,
    ResponseOutparam,
    httpErrorCode: () => undefined,
  };

  return { types, outgoingHandler, outbound, IncomingRequest, ResponseOutparam };
}

/** wasi:http error-code variant for a failure reported by main. */
function errorCode(code: string, message: string): { tag: string; val?: unknown } {
  if (code === 'HTTP-request-denied' || code === 'connection-refused' || code === 'connection-timeout' || code === 'HTTP-response-timeout') return { tag: code };
  if (code === 'DNS-error') return { tag: code, val: { rcode: message, infoCode: undefined } };
  return { tag: 'internal-error', val: message };
}

export type WasiHttp = ReturnType<typeof createWasiHttp>;
