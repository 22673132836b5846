/** One JSON access-log line per L7 request, with stable field names, batched so a busy proxy makes a few writes per second instead of one per request. */
import { createWriteStream, type WriteStream } from 'node:fs';
import type { HeaderList } from './header-list.js';
import type { L7Target } from './l7-context.js';

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

/** Receives batches of complete lines, each ending in "\n". */
export type AccessLogBatchSink = (text: string) => void;

export class HttpAccessLog {
  readonly enabled: boolean;
  readonly #sink: AccessLogBatchSink;
  readonly #stream: WriteStream | undefined;
  #pending = '';
  #scheduled = false;
  /**
   * How long lines wait before they are written: a sink gets them every event-loop turn; a file or stdout every
   * FILE_FLUSH_MS: written every loop turn, fs.write's native call alone took about a quarter of the thread's busy
   * time at 5k requests/s (CPU profile, test/bench/README.md), more than formatting the lines.
   */
  readonly #flushMs: number;
  /** `kind` and `worker` open every line, as in L4 lines (one schema for both, README "Access log"). */
  readonly #prefix: string;

  /** `sink` wins over `path`; with neither, lines go to stdout. `worker` is the event loop's index (0 with one). */
  constructor(opts: { enabled?: boolean; path?: string; sink?: AccessLogBatchSink; worker?: number } = {}) {
    this.enabled = opts.enabled ?? true;
    this.#prefix = `{"kind":"http","worker":${opts.worker ?? 0},`;
    this.#flushMs = opts.sink === undefined ? FILE_FLUSH_MS : 0;
    if (opts.sink !== undefined) this.#sink = opts.sink;
    else if (opts.path !== undefined) {
      const stream = createWriteStream(opts.path, { flags: 'a' });
      stream.on('error', () => {
        // A full disk must not take the data path down; lines are dropped instead.
      });
      this.#stream = stream;
      this.#sink = (text) => stream.write(text);
    } else this.#sink = (text) => process.stdout.write(text);
  }

  write(entry: HttpAccessEntry): void {
    if (!this.enabled) return;
    this.#pending += this.#prefix + JSON.stringify(entry).slice(1) + '\n';
    if (this.#pending.length > 64 * 1024) this.flush();
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
    if (this.#pending === '') return;
    const text = this.#pending;
    this.#pending = '';
    this.#sink(text);
  }

  close(): Promise<void> {
    this.flush();
    const stream = this.#stream;
    return stream === undefined ? Promise.resolve() : new Promise((resolve) => stream.end(resolve));
  }
}
