/** Copies bytes both ways between two Duplexes (an HTTP/2 tunnel stream and a TCP socket) with counts, half-close and a deeper write buffer than Node's 16 KiB default. */
import type { Duplex } from 'node:stream';
import { endAndDrop, forwardStream } from '../l4/stream-forward.js';

export interface SpliceResult {
  /** Bytes read from `a` and written to `b`. */
  aToB: number;
  /** Bytes read from `b` and written to `a`. */
  bToA: number;
  error?: Error;
  /** Which side failed first, when one did. */
  failedSide?: 'a' | 'b';
}

/** Resolves once both sides closed; a failure on either destroys both. `abort(err)` tears the pair down, `drain()` ends it in order. */
export function splice(a: Duplex, b: Duplex): { done: Promise<SpliceResult>; abort: (err: Error) => void; drain: () => void } {
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
  forwardStream(a, b, (n) => (aToB += n));
  forwardStream(b, a, (n) => (bToA += n));
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
    drain: () => {
      endAndDrop(a);
      endAndDrop(b);
    },
  };
}
