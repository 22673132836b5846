/**
 * One upstream attempt of an h2c exchange: a stream on a pooled h2c session, or an HTTP/1.1 request through undici
 * for services that speak HTTP/1.1. Both report the same events, so retries, filters and accounting stay in the
 * exchange; a cancelled attempt reports nothing more.
 */
import http2 from 'node:http2';
import { PassThrough, type Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import type { HeaderList } from './header-list.js';
import { addOutgoing, headerListFrom } from './h2-headers.js';
import type { H2UpstreamPool } from './h2-upstream-pool.js';
import type { AttemptFailure } from './retry-policy.js';

const { NGHTTP2_CANCEL, NGHTTP2_FLAG_END_STREAM, NGHTTP2_INTERNAL_ERROR, NGHTTP2_REFUSED_STREAM } = http2.constants;

/** What an attempt reports, in order: a response, its data, its trailers, its end; or a failure at any point. */
export interface AttemptSink {
  onResponse(status: number, headers: HeaderList, endStream: boolean): void;
  onData(chunk: Buffer): void;
  onTrailers(trailers: HeaderList): void;
  onEnd(): void;
  /** No usable (rest of the) response: before the response this is retry material, after it a reset. */
  onFailure(kind: Exclude<AttemptFailure, 'timeout'>, message: string, rstCode: number): void;
  /** The upstream takes request body again after write() returned false. */
  onDrain(): void;
}

export interface UpstreamAttempt {
  write(chunk: Buffer): boolean;
  /** Ends the request, with the client's trailers when it sent some (HTTP/1.1 upstreams drop them). */
  end(trailers: HeaderList | undefined): void;
  pause(): void;
  resume(): void;
  /** Abandons the attempt; its sink hears nothing more. */
  cancel(): void;
}

export interface AttemptRequest {
  method: string;
  path: string;
  authority: string;
  headers: HeaderList;
  /** The request carries a body (possibly empty) or trailers; false ends the request with its headers. */
  hasBody: boolean;
}

/** Connection errors that mean the request never reached the upstream. */
const CONNECT_ERRORS = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL', 'ETIMEDOUT', 'ENOTFOUND', 'UND_ERR_CONNECT_TIMEOUT']);
/** Session states in which a new stream is refused before anything is sent (RFC 9113 §8.7: safe to retry). */
const REFUSED_ERRORS = new Set(['ERR_HTTP2_GOAWAY_SESSION', 'ERR_HTTP2_INVALID_SESSION', 'ERR_HTTP2_OUT_OF_STREAMS']);

function errorCode(err: unknown): string {
  const e = err as { code?: unknown; cause?: { code?: unknown } } | undefined;
  const code = e?.code ?? e?.cause?.code;
  return typeof code === 'string' ? code : '';
}

/** An h2c stream to `address:port` on a session pooled for `identity` (see L7Target.upstreamIdentity). */
export function startH2Attempt(pool: H2UpstreamPool, address: string, port: number, identity: string | undefined, connectTimeoutMs: number, req: AttemptRequest, sink: AttemptSink): UpstreamAttempt {
  const out: http2.OutgoingHttpHeaders = { ':method': req.method, ':path': req.path, ':authority': req.authority, ':scheme': 'http' };
  addOutgoing(out, req.headers);
  const { session, done } = pool.acquire(address, port, connectTimeoutMs, identity);
  let cancelled = false;
  let up: http2.ClientHttp2Stream;
  try {
    // Trailers can only follow a body the client has not finished yet, so every body leaves room for them.
    up = session.request(out, { endStream: !req.hasBody, waitForTrailers: req.hasBody });
  } catch (err) {
    done();
    const code = errorCode(err);
    const kind = REFUSED_ERRORS.has(code) ? 'refused-stream' : 'connect-failure';
    process.nextTick(() => cancelled || sink.onFailure(kind, `upstream h2 request failed: ${(err as Error).message}`, NGHTTP2_REFUSED_STREAM));
    return { write: () => true, end: () => undefined, pause: () => undefined, resume: () => undefined, cancel: () => void (cancelled = true) };
  }
  let ended = false;
  let lastError: Error | undefined;
  let trailers: HeaderList | undefined;
  up.on('response', (h, flags: number) => {
    if (!cancelled) sink.onResponse(Number(h[':status'] ?? 502), headerListFrom(h), (flags & NGHTTP2_FLAG_END_STREAM) !== 0);
    // Node emits 'response' on the next tick, after DATA that came in the same read: the body is read only from here.
    up.on('data', (c: Buffer) => cancelled || sink.onData(c));
    up.on('end', () => {
      ended = true;
      if (!cancelled) sink.onEnd();
    });
  });
  up.on('trailers', (t: http2.IncomingHttpHeaders) => cancelled || sink.onTrailers(headerListFrom(t)));
  if (req.hasBody) {
    up.on('drain', () => cancelled || sink.onDrain());
    up.on('wantTrailers', () => {
      try {
        up.sendTrailers(trailers === undefined ? {} : addOutgoing({}, trailers));
      } catch {
        up.close(NGHTTP2_INTERNAL_ERROR);
      }
    });
  }
  up.on('error', (err: Error) => (lastError = err));
  up.on('close', () => {
    done();
    if (cancelled || ended) return;
    const rst = up.rstCode ?? NGHTTP2_INTERNAL_ERROR;
    // A session that never became ready failed to connect: nothing reached the upstream.
    const kind = rst === NGHTTP2_REFUSED_STREAM ? 'refused-stream' : session.connecting || CONNECT_ERRORS.has(errorCode(lastError)) ? 'connect-failure' : 'reset';
    sink.onFailure(kind, lastError?.message ?? `upstream reset the stream (code ${rst})`, rst);
  });
  return {
    write: (chunk) => up.write(chunk),
    end(t) {
      trailers = t;
      if (req.hasBody && !up.writableEnded) up.end();
    },
    pause: () => void up.pause(),
    resume: () => void up.resume(),
    cancel() {
      if (cancelled) return;
      cancelled = true;
      if (!up.closed) up.close(NGHTTP2_CANCEL);
    },
  };
}

/** HTTP/2 client, HTTP/1.1 service: the request goes out through undici, the response comes back as events. */
export function startHttp1Attempt(agent: Dispatcher, address: string, port: number, req: AttemptRequest, sink: AttemptSink): UpstreamAttempt {
  const headers: Record<string, string> = {};
  const f = req.headers.flat;
  for (let i = 0; i < f.length; i += 2) {
    const n = f[i]!;
    if (n === 'te') continue;
    headers[n] = headers[n] === undefined ? f[i + 1]! : `${headers[n]}, ${f[i + 1]!}`;
  }
  headers.host = req.authority;
  const abort = new AbortController();
  // undici starts reading only once connected: the body waits in a PassThrough, whose backpressure reaches the client.
  const body = req.hasBody ? new PassThrough() : undefined;
  body?.on('drain', () => cancelled || sink.onDrain());
  let cancelled = false;
  let paused = false;
  let res: Readable | undefined;
  const origin = address.includes(':') ? `http://[${address}]:${port}` : `http://${address}:${port}`;
  agent.request({ origin, path: req.path, method: req.method, headers, body, signal: abort.signal, headersTimeout: 0, bodyTimeout: 0 }).then(
    (r) => {
      if (cancelled) return void r.body.destroy();
      res = r.body;
      if (paused) res.pause();
      sink.onResponse(r.statusCode, headerListFrom(r.headers), false);
      r.body.on('data', (c: Buffer) => cancelled || sink.onData(c));
      r.body.on('end', () => {
        if (cancelled) return;
        const t = r.trailers;
        if (Object.keys(t).length > 0) sink.onTrailers(headerListFrom(t));
        if (!cancelled) sink.onEnd();
      });
      r.body.on('error', (err: Error) => cancelled || sink.onFailure('reset', `upstream HTTP/1.1 response failed: ${err.message}`, NGHTTP2_INTERNAL_ERROR));
    },
    (err: unknown) => {
      if (cancelled) return;
      const kind = CONNECT_ERRORS.has(errorCode(err)) ? 'connect-failure' : 'reset';
      sink.onFailure(kind, `upstream HTTP/1.1 request failed: ${(err as Error).message}`, NGHTTP2_INTERNAL_ERROR);
    },
  );
  return {
    write: (chunk) => body === undefined || body.write(chunk),
    end: () => void body?.end(),
    pause() {
      paused = true;
      res?.pause();
    },
    resume() {
      paused = false;
      res?.resume();
    },
    cancel() {
      if (cancelled) return;
      cancelled = true;
      abort.abort();
      body?.destroy();
      res?.destroy();
    },
  };
}
