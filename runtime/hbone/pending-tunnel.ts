/**
 * An HBONE tunnel that is still being opened, usable at once as a connecting net.Socket is: writes wait, `connecting`
 * stays true until the CONNECT is answered, then 'connect' fires; a failed open destroys it with the error. The L7
 * pools, node:http2 and undici need a stream synchronously, and ride HBONE tunnels through this.
 */
import { Duplex } from 'node:stream';

export class PendingTunnel extends Duplex {
  connecting = true;
  bytesRead = 0;
  bytesWritten = 0;
  #inner: Duplex | undefined;
  #innerEnded = false;
  readonly #abort = new AbortController();

  constructor(open: (signal: AbortSignal) => Promise<Duplex>) {
    super({
      // As a net.Socket by default: the end of the upstream's bytes ends ours too.
      allowHalfOpen: false,
      construct: (done) => {
        // destroy() before the open began (construction runs a tick after the constructor): nothing to open.
        if (this.#abort.signal.aborted) return done();
        open(this.#abort.signal).then(
          (inner) => {
            // Abandoned while opening (destroy() was called): the late tunnel is closed, and nothing is reported.
            if (this.#abort.signal.aborted) {
              inner.destroy();
              return done();
            }
            this.#attach(inner);
            this.connecting = false;
            done();
            this.emit('connect');
          },
          (err: unknown) => done(this.#abort.signal.aborted ? undefined : err instanceof Error ? err : new Error(String(err))),
        );
      },
    });
  }

  /** Abandons an open still in flight (the HBONE client cancels its CONNECT), then destroys as any stream. */
  override destroy(error?: Error): this {
    this.#abort.abort();
    return super.destroy(error);
  }

  override _read(): void {
    this.#inner?.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.bytesWritten += chunk.length;
    this.#inner!.write(chunk, callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    const inner = this.#inner!;
    if (inner.destroyed || inner.writableEnded) return callback();
    inner.end(callback);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#inner?.destroy();
    callback(error);
  }

  #attach(inner: Duplex): void {
    this.#inner = inner;
    inner.on('data', (chunk: Buffer) => {
      this.bytesRead += chunk.length;
      if (!this.push(chunk)) inner.pause();
    });
    inner.once('end', () => {
      this.#innerEnded = true;
      this.push(null);
    });
    inner.once('error', (err) => this.destroy(err));
    // A stream reset without an error event still ends the tunnel; a clean end is left to finish on its own.
    inner.once('close', () => {
      if (!this.#innerEnded) this.destroy(new Error('HBONE tunnel closed before its end'));
    });
  }
}
