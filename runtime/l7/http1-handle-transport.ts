/**
 * The HTTP/1 transport on a plain TCP socket's libuv stream handle: one read callback per chunk and one write call
 * per message (a head and its body leave together through writev), below Node's Readable/Writable machinery. The
 * net.Socket stays the owner of the handle: destroy(), 'close' and the byte tunnels still go through it.
 *
 * Why internals: `process.binding('stream_wrap')` (WriteWrap, ShutdownWrap, streamBaseState) is what net.Socket is
 * built on in Node 20, as in runtime/l4/handle-copy.ts. Skipping the stream state machine (push, nextTick'd
 * maybeReadMore, writeOrBuffer, the write callbacks) is most of what a proxied request costs in JavaScript. The
 * binding shape is checked at load; anything unexpected, or WEFT_L7_STREAM_IO=1, keeps every socket on streams.
 */
import type net from 'node:net';
import type { Duplex } from 'node:stream';
import { ENV, envValue } from '../config/defaults.js';
import { errnoError } from '../errno-error.js';
import { plainTcpHandle, streamWrapBinding, UV_EOF, type StreamHandle, type StreamWrapBinding, type WriteReq } from '../l4/stream-wrap-binding.js';
import type { Http1Transport, TransportSink } from './http1-transport.js';
import { extendedVerbatimHead } from './http1-head-writer.js';

/** Bytes that may wait in libuv before write() answers false (Node's default highWaterMark for sockets). */
const HIGH_WATER_MARK = 16 * 1024;

const binding = envValue(ENV.l7StreamIo) === '1' ? undefined : streamWrapBinding;

/**
 * The one buffer every handle transport reads into (libuv's useUserBuffer). Each chunk is copied out at its exact
 * size, from Buffer's shared pool when small, so no chunk aliases it; left to itself, Node allocates 64 KiB per read,
 * shrinks it and wraps it in a new ArrayBuffer, which costs more than the copy for the small reads HTTP/1 mostly sees.
 */
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

/** The socket's TCP handle when it has every method used here; TLS and pipe handles are left to streams. */
function tcpHandleOf(socket: Duplex): StreamHandle | undefined {
  const h = plainTcpHandle(socket);
  if (h === undefined) return undefined;
  const ok = typeof h.readStart === 'function' && typeof h.readStop === 'function' && typeof h.writeBuffer === 'function' && typeof h.writeLatin1String === 'function' && typeof h.writev === 'function' && typeof h.shutdown === 'function';
  return ok ? (h as StreamHandle) : undefined;
}

/**
 * A handle transport for `socket`, or undefined when it must stay on streams: no usable binding, not a plain TCP
 * socket, or bytes already sitting in its Readable or Writable (ours would overtake them).
 */
export function createHandleTransport(socket: Duplex, sink: TransportSink): Http1Transport | undefined {
  if (binding === undefined || socket.destroyed || socket.readableLength !== 0 || socket.writableLength !== 0) return undefined;
  const handle = tcpHandleOf(socket);
  if (handle === undefined) return undefined;
  return new HandleTransport(socket as net.Socket, handle, binding, sink);
}

/** The `nread` bytes just read into READ_BUFFER, in memory of their own. */
function copyOut(nread: number): Buffer {
  const chunk = Buffer.allocUnsafe(nread);
  READ_BUFFER.copy(chunk, 0, 0, nread);
  return chunk;
}

class HandleTransport implements Http1Transport {
  readonly socket: net.Socket;
  readonly #handle: StreamHandle;
  readonly #bind: StreamWrapBinding;
  readonly #sink: TransportSink;
  readonly #originalOnread: StreamHandle['onread'];
  /** Bytes handed to libuv that it has not written yet (only async writes count). */
  #pendingBytes = 0;
  #pendingWrites = 0;
  #needDrain = false;
  #paused = false;
  /** libuv is reading (readStart called and not stopped). */
  #reading = false;
  #eof = false;
  #ending = false;
  #shutDown = false;
  #released = false;
  #error: Error | undefined;
  /** The write request the next write uses (see #write). */
  #req: WriteReq | undefined;
  /** Reads land in READ_BUFFER (for the handle's whole life: libuv offers no way back). */
  #userBuffer = false;
  readonly #onWritten: (status: number) => void;

  constructor(socket: net.Socket, handle: StreamHandle, bind: StreamWrapBinding, sink: TransportSink) {
    this.socket = socket;
    this.#handle = handle;
    this.#bind = bind;
    this.#sink = sink;
    this.#originalOnread = handle.onread;
    this.#onWritten = (status) => this.#written(status);
    // From here on Node's Readable must stay out of the way (a second readStart would surface as EALREADY).
    handle.reading = true;
    socket.on('error', (err: Error) => {
      this.#error ??= err;
    });
    socket.on('close', () => {
      this.#reading = false;
      sink.onClose(this.#error);
    });
    handle.useUserBuffer?.(READ_BUFFER);
    this.#userBuffer = handle.useUserBuffer !== undefined;
    handle.onread = (arrayBuffer) => this.#onread(arrayBuffer);
    // A connection still being made starts reading once it is up; net's own read(0) then finds `reading` set.
    if (socket.connecting) socket.once('connect', () => this.#startReading());
    else this.#startReading();
  }

  #startReading(): void {
    if (this.#paused || this.#eof || this.#reading || this.socket.destroyed || this.#released) return;
    this.#reading = true;
    this.#handle.readStart();
  }

  #stopReading(): void {
    if (!this.#reading) return;
    this.#reading = false;
    if (!this.socket.destroyed) this.#handle.readStop();
  }

  #onread(arrayBuffer: ArrayBuffer | undefined): void {
    const state = this.#bind.streamBaseState;
    const nread = state[this.#bind.kReadBytesOrError]!;
    if (nread > 0) {
      this.#sink.onData(this.#userBuffer ? copyOut(nread) : Buffer.from(arrayBuffer as ArrayBuffer, state[this.#bind.kArrayBufferOffset], nread));
      return;
    }
    if (nread === 0) return;
    if (nread === UV_EOF) {
      this.#eof = true;
      this.#stopReading();
      this.#sink.onEnd();
      if (this.socket.destroyed) return;
      if (this.#shutDown) this.socket.destroy();
      // allowHalfOpen off: Node ends our side too once the peer's FIN arrived (the shutdown's completion destroys).
      else if (!this.socket.allowHalfOpen) this.end();
      return;
    }
    this.#fail(errnoError(nread, 'read'));
  }

  #fail(err: Error): void {
    this.#error ??= err;
    this.#reading = false;
    this.socket.destroy();
  }

  #write(data: Buffer | string, head: string | undefined): boolean {
    if (this.#ending || this.#released || this.socket.destroyed) return false;
    const bind = this.#bind;
    // A write that completes at once leaves its request object unused, so the next write takes it again; libuv only
    // holds on to the one of a write that went asynchronous, and that one is replaced below.
    const req = (this.#req ??= this.#newWriteReq());
    // Keeps the bytes alive while libuv may still be writing them.
    req.buffer = data;
    let err: number;
    let length: number;
    if (head !== undefined) {
      err = this.#handle.writev(req, [head, 'latin1', data, 'buffer'], false);
      length = head.length + data.length;
    } else if (typeof data === 'string') {
      err = this.#handle.writeLatin1String(req, data);
      length = data.length;
    } else {
      err = this.#handle.writeBuffer(req, data);
      length = data.length;
    }
    if (err !== 0) {
      this.#fail(errnoError(err, 'write'));
      return false;
    }
    if (bind.streamBaseState[bind.kLastWriteWasAsync] === 0) {
      req.buffer = undefined;
      return this.#pendingBytes < HIGH_WATER_MARK;
    }
    this.#req = undefined;
    this.#pendingWrites++;
    this.#pendingBytes += length;
    req.bytes = length;
    if (this.#pendingBytes < HIGH_WATER_MARK) return true;
    this.#needDrain = true;
    return false;
  }

  #newWriteReq(): WriteReq {
    const req = new this.#bind.WriteWrap();
    req.handle = this.#handle;
    req.oncomplete = this.#onWritten;
    req.async = false;
    req.bytes = 0;
    return req;
  }

  #written(status: number): void {
    if (status < 0) {
      if (!this.socket.destroyed) this.#fail(errnoError(status, 'write'));
      return;
    }
    this.#pendingWrites--;
    if (this.#pendingWrites > 0) return;
    this.#pendingBytes = 0;
    if (this.#needDrain && !this.socket.destroyed) {
      this.#needDrain = false;
      this.#sink.onDrain();
    }
  }

  write(data: Buffer | string): boolean {
    return this.#write(data, undefined);
  }

  writeHead(head: string, body: Buffer): boolean {
    return body.length === 0 ? this.#write(head, undefined) : this.#write(body, head);
  }

  writeSpliced(head: Buffer, lines: string, body: Buffer | undefined): boolean {
    return this.#write(extendedVerbatimHead(head, lines, body, body?.length ?? 0), undefined);
  }

  pause(): void {
    this.#paused = true;
    this.#stopReading();
  }

  resume(): void {
    this.#paused = false;
    this.#startReading();
  }

  end(last?: Buffer): void {
    if (last !== undefined) this.#write(last, undefined);
    if (this.#ending || this.#released || this.socket.destroyed) return;
    this.#ending = true;
    const req = new this.#bind.ShutdownWrap();
    req.handle = this.#handle;
    req.oncomplete = () => {
      this.#shutDown = true;
      // Both directions done: what Node's autoDestroy does after 'end' and 'finish'.
      if (this.#eof && !this.socket.destroyed) this.socket.destroy();
    };
    const err = this.#handle.shutdown(req);
    if (err !== 0) this.#fail(errnoError(err, 'shutdown'));
  }

  destroy(): void {
    this.socket.destroy();
  }

  release(): Duplex {
    if (this.#released) return this.socket;
    this.#released = true;
    const h = this.#handle;
    const original = this.#originalOnread;
    // Node's own read callback expects an ArrayBuffer: hand it each chunk copied out of READ_BUFFER.
    h.onread = !this.#userBuffer
      ? original
      : (arrayBuffer) => {
          const nread = this.#bind.streamBaseState[this.#bind.kReadBytesOrError]!;
          if (nread <= 0) return original.call(h, arrayBuffer);
          const chunk = copyOut(nread);
          this.#bind.streamBaseState[this.#bind.kArrayBufferOffset] = chunk.byteOffset;
          return original.call(h, chunk.buffer as ArrayBuffer);
        };
    if (this.socket.destroyed) return this.socket;
    // Node's Readable takes over with libuv already reading, which is the state its own `reading` flag describes.
    if (this.#eof) this.socket.push(null);
    else if (!this.#reading) {
      this.#reading = true;
      h.readStart();
    }
    return this.socket;
  }
}
