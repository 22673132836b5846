/** One JSON access-log line per L7 request, with stable field names, batched so a busy proxy makes a few writes per second instead of one per request. */
import { createWriteStream, type WriteStream } from 'node:fs';
import type { HeaderList } from './header-list.js';
import type { L7Target } from './l7-context.js';
import { jsonKey, jsonPrefix, JsonLineBuffer } from '../telemetry/json-line-buffer.js';

export interface HttpAccessEntry {
  start_time: string;
  method: string;
  path: string;
  protocol: string;
  authority: string;
  response_code: number;
  response_flags: string;
  grpc_status: string;
  bytes_received: number;
  bytes_sent: number;
  duration_ms: number;
  upstream_host: string;
  upstream_cluster: string;
  upstream_attempts: number;
  route_name: string;
  request_id: string;
  trace_id: string;
  span_id: string;
  source_address: string;
  source_principal: string;
  destination_service: string;
  user_agent: string;
  error: string;
}

/** The closing fields every protocol fills alike: trace ids, who called which service, the user agent, the error. */
export function exchangeContextFields(
  target: L7Target,
  trace: { traceId: string; spanId: string } | undefined,
  headers: HeaderList,
  error: string,
): Pick<HttpAccessEntry, 'trace_id' | 'span_id' | 'source_address' | 'source_principal' | 'destination_service' | 'user_agent' | 'error'> {
  return {
    trace_id: trace?.traceId ?? '-',
    span_id: trace?.spanId ?? '-',
    source_address: `${target.source.address}:${target.source.port}`,
    source_principal: target.sourceIdentity ?? '-',
    destination_service: target.service?.hostname ?? '-',
    user_agent: headers.get('user-agent') ?? '-',
    error: error === '' ? '-' : error,
  };
}

let isoMs = -1;
let isoText = '';

/**
 * `ms` (since the epoch) as an ISO 8601 UTC time with milliseconds, the access log's `start_time`. Formatting a Date
 * costs over a microsecond, and a busy proxy starts dozens of requests in each millisecond: the last one is reused.
 */
export function accessLogTime(ms: number): string {
  const whole = Math.floor(ms);
  if (whole !== isoMs) {
    isoMs = whole;
    isoText = new Date(whole).toISOString();
  }
  return isoText;
}

/** How long a line may wait in memory before it is written to a file or stdout (as nginx's `access_log … flush=`). */
const FILE_FLUSH_MS = 50;
/** A batch this large is written at once, without waiting for its timer. */
const BATCH_BYTES = 64 * 1024;

/** Receives batches of complete lines, each ending in "\n". */
export type AccessLogBatchSink = (text: string) => void;

/** The keys of a line, in HttpAccessEntry's order (the documented field order); `repeats` where values recur from line to line. */
const K = {
  start_time: jsonKey('start_time'),
  method: jsonKey('method', { repeats: true }),
  path: jsonKey('path'),
  protocol: jsonKey('protocol', { repeats: true }),
  authority: jsonKey('authority', { repeats: true }),
  response_code: jsonKey('response_code', { repeats: true }),
  response_flags: jsonKey('response_flags', { repeats: true }),
  grpc_status: jsonKey('grpc_status', { repeats: true }),
  bytes_received: jsonKey('bytes_received', { repeats: true }),
  bytes_sent: jsonKey('bytes_sent'),
  duration_ms: jsonKey('duration_ms'),
  upstream_host: jsonKey('upstream_host', { repeats: true }),
  upstream_cluster: jsonKey('upstream_cluster', { repeats: true }),
  upstream_attempts: jsonKey('upstream_attempts', { repeats: true }),
  route_name: jsonKey('route_name', { repeats: true }),
  request_id: jsonKey('request_id'),
  trace_id: jsonKey('trace_id'),
  span_id: jsonKey('span_id'),
  source_address: jsonKey('source_address'),
  source_principal: jsonKey('source_principal', { repeats: true }),
  destination_service: jsonKey('destination_service', { repeats: true }),
  user_agent: jsonKey('user_agent', { repeats: true }),
  error: jsonKey('error', { repeats: true }),
} as const;

export class HttpAccessLog {
  readonly enabled: boolean;
  /** A sink of text batches (tests, worker threads); without one, bytes go to `#out`. */
  readonly #sink: AccessLogBatchSink | undefined;
  readonly #out: { write(bytes: Uint8Array, done: () => void): void };
  readonly #stream: WriteStream | undefined;
  /**
   * Lines are serialized into this buffer as they are logged (byte for byte what JSON.stringify of the entry gives);
   * a batch leaves as its bytes. With a string per line, the batch's flatten and UTF-8 conversion and the per-line
   * JSON.stringify cost 3–5 µs of user time per request (test/bench/README.md).
   */
  readonly #lines = new JsonLineBuffer();
  /** Buffers whose write finished, to take the next batch (a stream holds a buffer until its write is done). */
  readonly #spare: Buffer[] = [];
  #scheduled = false;
  /**
   * How long lines wait before they are written: a sink gets them every event-loop turn; a file or stdout every
   * FILE_FLUSH_MS: written every loop turn, fs.write's native call alone took about a quarter of the thread's busy
   * time at 5k requests/s (CPU profile, test/bench/README.md), more than formatting the lines.
   */
  readonly #flushMs: number;
  /** `kind` and `worker` open every line, as in L4 lines (one schema for both, README "Access log"). */
  readonly #prefix: Uint8Array;

  /**
   * `sink` wins over `bytes`, `bytes` over `path`; with none, lines go to stdout. `bytes` takes a batch's bytes as a
   * file would, every 50 ms or 64 KiB, and must copy what it keeps before it returns (a worker thread posts them to
   * the primary). `worker` is the event loop's index (0 with one).
   */
  constructor(opts: { enabled?: boolean; path?: string; sink?: AccessLogBatchSink; bytes?: (batch: Uint8Array) => void; worker?: number } = {}) {
    this.enabled = opts.enabled ?? true;
    this.#prefix = jsonPrefix(`{"kind":"http","worker":${opts.worker ?? 0},`);
    this.#flushMs = opts.sink === undefined ? FILE_FLUSH_MS : 0;
    this.#sink = opts.sink;
    const bytes = opts.bytes;
    if (opts.sink === undefined && bytes !== undefined) {
      this.#out = {
        write: (batch, done) => {
          bytes(batch);
          done();
        },
      };
    } else if (opts.sink === undefined && opts.path !== undefined) {
      const stream = createWriteStream(opts.path, { flags: 'a' });
      stream.on('error', () => {
        // A full disk must not take the data path down; lines are dropped instead.
      });
      this.#stream = stream;
      this.#out = { write: (bytes, done) => stream.write(bytes, done) };
    } else this.#out = { write: (bytes, done) => process.stdout.write(bytes, done) };
  }

  write(entry: HttpAccessEntry): void {
    if (!this.enabled) return;
    const b = this.#lines;
    b.begin(this.#prefix);
    b.string(K.start_time, entry.start_time);
    b.string(K.method, entry.method);
    b.string(K.path, entry.path);
    b.string(K.protocol, entry.protocol);
    b.string(K.authority, entry.authority);
    b.number(K.response_code, entry.response_code);
    b.string(K.response_flags, entry.response_flags);
    b.string(K.grpc_status, entry.grpc_status);
    b.number(K.bytes_received, entry.bytes_received);
    b.number(K.bytes_sent, entry.bytes_sent);
    b.number(K.duration_ms, entry.duration_ms);
    b.string(K.upstream_host, entry.upstream_host);
    b.string(K.upstream_cluster, entry.upstream_cluster);
    b.number(K.upstream_attempts, entry.upstream_attempts);
    b.string(K.route_name, entry.route_name);
    b.string(K.request_id, entry.request_id);
    b.string(K.trace_id, entry.trace_id);
    b.string(K.span_id, entry.span_id);
    b.string(K.source_address, entry.source_address);
    b.string(K.source_principal, entry.source_principal);
    b.string(K.destination_service, entry.destination_service);
    b.string(K.user_agent, entry.user_agent);
    b.string(K.error, entry.error);
    b.end();
    if (b.length > BATCH_BYTES) this.flush();
    else if (!this.#scheduled) {
      this.#scheduled = true;
      if (this.#flushMs === 0) setImmediate(this.#flushScheduled);
      else setTimeout(this.#flushScheduled, this.#flushMs).unref();
    }
  }

  readonly #flushScheduled = (): void => {
    this.#scheduled = false;
    this.flush();
  };

  flush(): void {
    const b = this.#lines;
    if (b.length === 0) return;
    if (this.#sink !== undefined) {
      const text = b.buf.toString('utf8', 0, b.length);
      b.take();
      this.#sink(text);
      return;
    }
    const full = b.buf;
    const bytes = b.take(this.#spare.pop() ?? Buffer.allocUnsafeSlow(full.length));
    this.#out.write(bytes, () => {
      if (this.#spare.length < 2) this.#spare.push(full);
    });
  }

  close(): Promise<void> {
    this.flush();
    const stream = this.#stream;
    return stream === undefined ? Promise.resolve() : new Promise((resolve) => stream.end(resolve));
  }
}
