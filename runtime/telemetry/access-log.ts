/** The L4 access log: one JSON line per connection, in the schema L7 lines share (snake_case, README "Access log"), tagged with the worker that served it. */
import { createWriteStream, type WriteStream } from 'node:fs';

export type AccessLogSink = (line: string) => void;

export class AccessLog {
  readonly #sink: AccessLogSink;
  readonly #stream: WriteStream | undefined;
  readonly #worker: number;
  enabled: boolean;

  /** `sink` wins over `path`; with neither, lines go to stdout. `worker` is the event loop's index (0 with one). */
  constructor(opts: { enabled?: boolean; path?: string; sink?: AccessLogSink; worker?: number } = {}) {
    this.enabled = opts.enabled ?? true;
    this.#worker = opts.worker ?? 0;
    if (opts.sink !== undefined) this.#sink = opts.sink;
    else if (opts.path !== undefined) {
      const stream = createWriteStream(opts.path, { flags: 'a' });
      this.#stream = stream;
      this.#sink = (line) => stream.write(line + '\n');
    } else this.#sink = (line) => process.stdout.write(line + '\n');
  }

  write(entry: Record<string, unknown>): void {
    if (this.enabled) this.#sink(JSON.stringify({ kind: 'tcp', worker: this.#worker, ...entry }));
  }

  close(): Promise<void> {
    const stream = this.#stream;
    return stream === undefined ? Promise.resolve() : new Promise((resolve) => stream.end(resolve));
  }
}
