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
  /** Ends the copy now (drain deadline, policy, idle timeout): both sockets are destroyed. */
  abort(): void;
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
  let eofs = 0;
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

  /** One direction; `key` names its byte counter. */
  const pump = (from: StreamHandle, to: StreamHandle, fromSide: 'a' | 'b', key: 'aToB' | 'bToA'): void => {
    let pending = 0;
    let ended = false;
    const onWritten = (status: number): void => {
      if (status < 0) return finish({ side: fromSide === 'a' ? 'b' : 'a', code: status });
      // Backpressure: reading resumes once everything handed to libuv for the peer has been written.
      if (--pending === 0 && !finished && !ended) from.readStart();
    };
    from.onread = (arrayBuffer: ArrayBuffer | undefined): void => {
      const nread = state[bind.kReadBytesOrError] as number;
      if (nread > 0 && arrayBuffer !== undefined) {
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
        // Half-close: pass the FIN on once the writes queued before it are out (libuv orders shutdown after them).
        ended = true;
        from.readStop();
        const req = new bind.ShutdownWrap();
        req.handle = to;
        req.oncomplete = () => {
          if (++eofs === 2) finish();
        };
        const err = to.shutdown(req);
        if (err !== 0 && ++eofs === 2) finish();
        return;
      }
      if (nread < 0) finish({ side: fromSide, code: nread });
    };
    from.readStart();
  };

  // From here on the sockets' Readable sides must stay out of the way (an EALREADY from a second readStart would
  // surface as a socket error): Node's _read skips readStart while `reading` is set.
  ha.reading = true;
  hb.reading = true;
  pump(ha, hb, 'a', 'aToB');
  pump(hb, ha, 'b', 'bToA');
  return { abort: () => finish(), idleFor: (now) => now - lastActivity, done };
}
