/** Copies bytes both ways between two Duplexes (an HTTP/2 tunnel stream and a TCP socket) with counts, half-close and a deeper write buffer than Node's 16 KiB default. */
import type { Duplex } from 'node:stream';

/**
 * Pausing the reader as soon as write() returns false (at 16 KiB for an Http2Stream) costs a pause/resume
 * round per frame at high rates; letting up to this much queue keeps the TLS writer fed with full records.
 */
const QUEUE_LIMIT_BYTES = 1024 * 1024;

export interface SpliceResult {
  /** Bytes read from `a` and written to `b`. */
  aToB: number;
  /** Bytes read from `b` and written to `a`. */
  bToA: number;
  error?: Error;
  /** Which side failed first, when one did. */
  failedSide?: 'a' | 'b';
}

function forward(from: Duplex, to: Duplex, count: (n: number) => void): void {
  let corked = false;
  const uncork = (): void => {
    corked = false;
    to.uncork();
  };
  from.on('data', (chunk: Buffer) => {
    count(chunk.length);
    // Write coalescing: the 16 KiB DATA frames of one TLS read each arrive in their own callback (so nextTick would
    // fire between them); uncorking after the poll phase sends all of them with one writev.
    if (!corked) {
      corked = true;
      to.cork();
      setImmediate(uncork);
    }
    to.write(chunk);
    if (to.writableLength >= QUEUE_LIMIT_BYTES) from.pause();
  });
  to.on('drain', () => {
    if (from.isPaused()) from.resume();
  });
  from.once('end', () => to.end());
}

/** Resolves once both sides closed; a failure on either destroys both. `abort(err)` tears the pair down. */
export function splice(a: Duplex, b: Duplex): { done: Promise<SpliceResult>; abort: (err: Error) => void } {
  let aToB = 0;
  let bToA = 0;
  let error: Error | undefined;
  let failedSide: 'a' | 'b' | undefined;
  const fail = (side: 'a' | 'b', err: Error): void => {
    if (error === undefined) {
      error = err;
      failedSide = side;
    }
    a.destroy();
    b.destroy();
  };
  const done = new Promise<SpliceResult>((resolve) => {
    let closed = 0;
    const onClose = (): void => {
      if (++closed < 2) return;
      resolve({ aToB, bToA, ...(error === undefined ? {} : { error }), ...(failedSide === undefined ? {} : { failedSide }) });
    };
    a.once('close', onClose);
    b.once('close', onClose);
  });
  forward(a, b, (n) => (aToB += n));
  forward(b, a, (n) => (bToA += n));
  a.on('error', (err: Error) => fail('a', err));
  b.on('error', (err: Error) => fail('b', err));
  // A socket accepted paused (weft's listeners use pauseOnConnect) does not flow on a 'data' listener alone.
  if (a.isPaused()) a.resume();
  if (b.isPaused()) b.resume();
  return {
    done,
    abort: (err) => {
      if (error === undefined) error = err;
      a.destroy();
      b.destroy();
    },
  };
}
