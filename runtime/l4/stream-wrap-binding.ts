/**
 * Node's internal `stream_wrap` binding (WriteWrap, ShutdownWrap, streamBaseState): what net.Socket itself is built on
 * in Node 20, and what the L4 handle copy and the L7 handle transport use to do I/O below Node's streams. Its shape is
 * checked once at load; undefined means "use streams".
 */
import net from 'node:net';
import type { Duplex } from 'node:stream';

/** The libuv stream handle of a TCP socket, as far as weft uses it. */
export interface StreamHandle {
  onread: (arrayBuffer: ArrayBuffer | undefined) => void;
  /** net.Socket's own flag: while true its `_read` never calls readStart, so Node cannot race our reads. */
  reading: boolean;
  readStart(): number;
  readStop(): number;
  writeBuffer(req: WriteReq, data: Uint8Array): number;
  writeLatin1String(req: WriteReq, data: string): number;
  writev(req: WriteReq, chunks: unknown[], allBuffers: boolean): number;
  shutdown(req: object): number;
  /** Reads go into `buffer` from then on; onread gets no ArrayBuffer, only the byte count in streamBaseState. */
  useUserBuffer?(buffer: Uint8Array): void;
}

/**
 * The libuv handle of a plain TCP net.Socket (TLS sockets and pipes excluded), with the methods a caller relies on
 * still to be checked by that caller.
 */
export function plainTcpHandle(socket: Duplex): (Partial<StreamHandle> & { constructor: { name: string } }) | undefined {
  if (!(socket instanceof net.Socket) || (socket as { encrypted?: boolean }).encrypted === true) return undefined;
  const h = (socket as unknown as { _handle?: (Partial<StreamHandle> & { constructor: { name: string } }) | null })._handle;
  return h === null || h === undefined || h.constructor.name !== 'TCP' ? undefined : h;
}

/** A write request; libuv calls `oncomplete` when an asynchronous write finished. */
export interface WriteReq {
  handle: StreamHandle;
  oncomplete: (status: number) => void;
  async: boolean;
  bytes: number;
  buffer: unknown;
}

export interface StreamWrapBinding {
  WriteWrap: new () => WriteReq;
  ShutdownWrap: new () => { handle: StreamHandle; oncomplete: (status: number) => void };
  streamBaseState: Int32Array;
  kReadBytesOrError: number;
  kArrayBufferOffset: number;
  kLastWriteWasAsync: number;
}

/** libuv's UV_EOF. */
export const UV_EOF = -4095;

function loadBinding(): StreamWrapBinding | undefined {
  try {
    const b = (process as unknown as { binding(name: string): Partial<StreamWrapBinding> }).binding('stream_wrap');
    const ok = typeof b.WriteWrap === 'function' && typeof b.ShutdownWrap === 'function' && b.streamBaseState instanceof Int32Array && typeof b.kReadBytesOrError === 'number' && typeof b.kArrayBufferOffset === 'number' && typeof b.kLastWriteWasAsync === 'number';
    return ok ? (b as StreamWrapBinding) : undefined;
  } catch {
    return undefined;
  }
}

/** The binding when its shape is the one this code was written against. */
export const streamWrapBinding: StreamWrapBinding | undefined = loadBinding();
