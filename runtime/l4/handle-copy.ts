/**
 * The L4 copy on libuv stream handles, below Node's Readable/Writable machinery — one read callback and one
 * write call per chunk, no stream state machine. copy.ts uses it when the native pump (native-copy.ts) is off or
 * cannot start; it takes over only sockets it can run safely (see `canCopyOnHandles`), streams otherwise.
 *
 * Why internals: the `stream_wrap` binding (stream-wrap-binding.ts) is what net.Socket itself is built on in
 * Node 20; using it directly cuts CPU per proxied request by about 10% against streams. WEFT_L4_STREAM_COPY=1
 * turns it off.
 */
import type net from 'node:net';
import { ENV, envValue } from '../config/defaults.js';
import { streamWrapBinding, UV_EOF, type StreamHandle, type StreamWrapBinding } from './stream-wrap-binding.js';

const binding = envValue(ENV.l4StreamCopy) === '1' ? undefined : streamWrapBinding;

function handleOf(socket: net.Socket): StreamHandle | undefined {
  const h = (socket as unknown as { _handle?: Partial<StreamHandle> | null })._handle;
  return h !== null && h !== undefined && typeof h.readStart === 'function' && typeof h.writeBuffer === 'function' && typeof h.shutdown === 'function' ? (h as StreamHandle) : undefined;
}

/**
 * True when both sockets can be copied on their handles: the binding is usable, both have a libuv stream handle,
 * and neither has bytes in flight in its Writable (ours would overtake them) or unread in its Readable (drained
 * by the caller first).
 */
export function canCopyOnHandles(a: net.Socket, b: net.Socket): boolean {
  return binding !== undefined && handleOf(a) !== undefined && handleOf(b) !== undefined && a.writableLength === 0 && b.writableLength === 0 && !a.destroyed && !b.destroyed;
}

export interface HandleCopyEnd {
  /** Bytes a → b and b → a. */
  aToB: number;
  bToA: number;
  /** undefined when both directions finished with EOF; else the libuv error code and which side raised it. */
  error?: { side: 'a' | 'b'; code: number };
}

export interface HandleCopy {
  /** Ends the copy now (policy, idle timeout, a drain's peer that never ends): both sockets are destroyed. */
  abort(): void;
  /**
   * Ends the copy in order (the drain deadline): nothing more is forwarded, each side gets its FIN once the bytes
   * queued for it are out, and late bytes are read and dropped until each peer's FIN, so the close is never a reset.
   * `done` settles when both peers ended; abort() cuts one that does not.
   */
  drain(): void;
  /** Milliseconds since the last byte moved in either direction. */
  idleFor(now: number): number;
  done: Promise<HandleCopyEnd>;
}

/** Starts copying both ways; the promise settles once both directions ended (EOF each way) or either side failed. */
export function copyOnHandles(a: net.Socket, b: net.Socket): HandleCopy {
  const bind = binding as StreamWrapBinding;
  const state = bind.streamBaseState;
  const ha = handleOf(a) as StreamHandle;
  const hb = handleOf(b) as StreamHandle;
  let lastActivity = Date.now();
  let finished = false;
  /** FINs passed on (shutdowns completed) and sources that sent theirs. */
  let shuts = 0;
  let peerEnds = 0;
  let draining = false;
  const counts = { aToB: 0, bToA: 0 };
  let resolve: (end: HandleCopyEnd) => void = () => {};
  const done = new Promise<HandleCopyEnd>((r) => (resolve = r));

  const finish = (error?: HandleCopyEnd['error']): void => {
    if (finished) return;
    finished = true;
    ha.readStop();
    hb.readStop();
    a.destroy();
    b.destroy();
    resolve({ ...counts, ...(error === undefined ? {} : { error }) });
  };
  // A draining copy also waits for both peers' FINs: closing with bytes unread would make the kernel send a reset.
  const check = (): void => {
    if (shuts === 2 && (!draining || peerEnds === 2)) finish();
  };

  /** One direction; `key` names its byte counter. Returns its drain: forward nothing more, FIN, drop late bytes. */
  const pump = (from: StreamHandle, to: StreamHandle, fromSide: 'a' | 'b', key: 'aToB' | 'bToA'): (() => void) => {
    let pending = 0;
    let ended = false;
    let sourceEnded = false;
    // Half-close: pass the FIN on once the writes queued before it are out (libuv orders shutdown after them).
    const shut = (): void => {
      if (ended) return;
      ended = true;
      const req = new bind.ShutdownWrap();
      req.handle = to;
      req.oncomplete = () => {
        shuts++;
        check();
      };
      if (to.shutdown(req) !== 0) {
        shuts++;
        check();
      }
    };
    const onWritten = (status: number): void => {
      if (status < 0) return finish({ side: fromSide === 'a' ? 'b' : 'a', code: status });
      // Backpressure: reading resumes once everything handed to libuv for the peer has been written.
      if (--pending === 0 && !finished && !ended) from.readStart();
    };
    from.onread = (arrayBuffer: ArrayBuffer | undefined): void => {
      const nread = state[bind.kReadBytesOrError] as number;
      if (nread > 0 && arrayBuffer !== undefined) {
        // Draining: late bytes are dropped.
        if (ended) return;
        const chunk = new Uint8Array(arrayBuffer, state[bind.kArrayBufferOffset], nread);
        counts[key] += nread;
        lastActivity = Date.now();
        const req = new bind.WriteWrap();
        req.handle = to;
        req.oncomplete = onWritten;
        req.async = false;
        req.bytes = nread;
        req.buffer = chunk; // keeps the bytes alive while libuv still writes them
        const err = to.writeBuffer(req, chunk);
        if (err !== 0) return finish({ side: fromSide === 'a' ? 'b' : 'a', code: err });
        if (state[bind.kLastWriteWasAsync] !== 0 && pending++ === 0) from.readStop();
        return;
      }
      if (nread === UV_EOF) {
        sourceEnded = true;
        peerEnds++;
        from.readStop();
        if (ended) check();
        else shut();
        return;
      }
      if (nread < 0) finish({ side: fromSide, code: nread });
    };
    from.readStart();
    return () => {
      shut();
      // Reading goes on (a direction paused by backpressure too) until the peer's FIN; a second readStart is harmless here.
      if (!sourceEnded && !finished) from.readStart();
    };
  };

  // From here on the sockets' Readable sides must stay out of the way (an EALREADY from a second readStart would
  // surface as a socket error): Node's _read skips readStart while `reading` is set.
  ha.reading = true;
  hb.reading = true;
  const drainAToB = pump(ha, hb, 'a', 'aToB');
  const drainBToA = pump(hb, ha, 'b', 'bToA');
  return {
    abort: () => finish(),
    drain: () => {
      if (finished || draining) return;
      draining = true;
      drainAToB();
      drainBToA();
      check();
    },
    idleFor: (now) => now - lastActivity,
    done,
  };
}
