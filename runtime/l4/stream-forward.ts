/** One direction of a stream copy: `from` → `to` with a deep write queue, write coalescing, pause/resume backpressure and FIN passed on. Used by the L4 stream path and the HBONE tunnel splice. */
import type { Duplex } from 'node:stream';

/**
 * Queued bytes past which `from` pauses. Pausing as soon as write() returns false (at 16 KiB for an Http2Stream)
 * costs a pause/resume round per frame at high rates; letting up to this much queue keeps the TLS writer fed with
 * full records.
 */
const QUEUE_LIMIT_BYTES = 1024 * 1024;

/** Forwards `from` to `to` until `from` ends; `count` hears each chunk's size. */
export function forwardStream(from: Duplex, to: Duplex, count?: (n: number) => void): void {
  let corked = false;
  const uncork = (): void => {
    corked = false;
    to.uncork();
  };
  from.on('data', (chunk: Buffer) => {
    count?.(chunk.length);
    // Write coalescing: chunks read in one poll phase (e.g. the 16 KiB DATA frames of one HBONE TLS read, each in its
    // own callback, so nextTick would fire between them) leave in one writev when uncorked after the poll phase.
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

/**
 * Ends a stream copy in order (the drain deadline): `s` forwards nothing more, is ended (FIN, END_STREAM), and reads on,
 * dropping what its peer still sends until that peer ends, so the close is never a reset over unread bytes.
 */
export function endAndDrop(s: Duplex): void {
  s.removeAllListeners('data');
  s.on('data', () => undefined);
  s.end();
  s.resume();
}
