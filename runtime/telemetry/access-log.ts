/** The access log: one JSON line per L4 connection (and per L7 request), with stable field names that tests assert. */
import { createWriteStream, type WriteStream } from 'node:fs';

export type AccessLogSink = (line: string) => void;

export class AccessLog {
  readonly #sink: AccessLogSink;
  readonly #stream: WriteStream | undefined;
  enabled: boolean;

  /** `sink` wins over `path`; with neither, lines go to stdout. */
  constructor(opts: { enabled?: boolean; path?: string; sink?: AccessLogSink } = {}) {
    this.enabled = opts.enabled ?? true;
    if (opts.sink !== undefined) this.#sink = opts.sink;
    else if (opts.path !== undefined) {
      const stream = createWriteStream(opts.path, { flags: 'a' });
      this.#stream = stream;
      this.#sink = (line) => stream.write(line + '\n');
    } else this.#sink = (line) => process.stdout.write(line + '\n');
  }

  write(entry: Record<string, unknown>): void {
    if (this.enabled) this.#sink(JSON.stringify(entry));
  }

  close(): Promise<void> {
    const stream = this.#stream;
    return stream === undefined ? Promise.resolve() : new Promise((resolve) => stream.end(resolve));
  }
}
