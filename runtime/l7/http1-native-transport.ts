/**
 * The HTTP/1 transport on the addon's batched socket I/O (runtime/native/weft-io.c). The addon polls a duplicate
 * of the socket's fd and reads every ready connection into one arena. Once per loop iteration, one call to
 * `onBatch` hands the new bytes to the connections' sinks. Writes go to the kernel from the addon. Node's per-read
 * callback and per-write request, the largest cost a proxied request still had in user space, are paid once per
 * batch instead. The net.Socket stays the owner: its 'close' ends the connection, and byte tunnels get it back
 * through release(). Used when the addon has it, for plain TCP sockets, unless WEFT_L7_NATIVE_IO=0; the handle
 * transport is the fallback.
 */
import type net from 'node:net';
import type { Duplex } from 'node:stream';
import { ENV, envValue } from '../config/defaults.js';
import { errnoError } from '../errno-error.js';
import { plainTcpHandle, type StreamHandle } from '../l4/stream-wrap-binding.js';
import { loadNativeSocket, socketFd, type NativeSocket } from '../native/weft-socket.js';
import type { Http1Transport, TransportSink } from './http1-transport.js';
import { extendedVerbatimHead } from './http1-head-writer.js';
import { batchEnded, batchStarted } from './loop-clock.js';

type NativeIo = Required<Pick<NativeSocket, 'ioInit' | 'ioOpen' | 'ioSlot' | 'ioWrite' | 'ioWriteSpliced' | 'ioEnd' | 'ioPause' | 'ioResume' | 'ioClose' | 'ioRelease'>>;

const REC_DATA = 1;
const REC_EOF = 2;
const REC_ERROR = 3;
const REC_DRAIN = 4;
const REC_SHUTDOWN = 5;

/** The connections the addon reports on, by id (ids are never reused). */
const open = new Map<number, NativeTransport>();
let nextId = 1;

interface Batch {
  io: NativeIo;
  arena: Buffer;
  records: Int32Array;
}

function loadBatch(): Batch | undefined {
  if (envValue(ENV.l7NativeIo) === '0' || envValue(ENV.l7StreamIo) === '1') return undefined;
  const native = loadNativeSocket();
  // An addon built before ioSlot takes other arguments, and one before ioWriteSpliced lacks the rest too: the handle
  // transport serves then.
  if (native === null || typeof native.ioInit !== 'function' || typeof native.ioSlot !== 'function') return undefined;
  const io = native as NativeIo;
  try {
    const [arena, records] = io.ioInit(onBatch);
    return { io, arena, records: new Int32Array(records) };
  } catch {
    // A second copy of this module in the same thread (the batch callback is per thread): that copy uses handles.
    return undefined;
  }
}

const batch = loadBatch();

/**
 * A batch whose bytes fit this is copied out of the arena in one piece, and its chunks are views of that copy; a
 * larger one gets a copy per chunk. A chunk a connection keeps (a partial head, a body held for a retry) pins the
 * memory it is a view of, so the bound keeps that at most what a chunk of Node's buffer pool pins (its 8 KiB slab).
 */
const SHARED_COPY_BYTES = 8 * 1024;

/** Every record since the last batch: [id, kind, offset, length] each. */
function onBatch(count: number): void {
  batchStarted();
  try {
    deliver(count);
  } finally {
    batchEnded();
  }
}

function deliver(count: number): void {
  const { arena, records } = batch!;
  // Data records come in arena order: the last one's end is the batch's size.
  let used = 0;
  for (let i = (count - 1) * 4; i >= 0; i -= 4) {
    if (records[i + 1] === REC_DATA) {
      used = records[i + 2]! + records[i + 3]!;
      break;
    }
  }
  // The copy's memory, taken once: Buffer#subarray reads `.buffer` (a runtime call) for every view it makes.
  let shared: ArrayBufferLike | undefined;
  let sharedAt = 0;
  if (used > 0 && used <= SHARED_COPY_BYTES) {
    const copy = Buffer.allocUnsafe(used);
    arena.copy(copy, 0, 0, used);
    shared = copy.buffer;
    sharedAt = copy.byteOffset;
  }
  for (let i = 0; i < count * 4; i += 4) {
    const t = open.get(records[i]!);
    // Closed meanwhile, or destroyed by an earlier record of this batch ('close', which unregisters it, comes later).
    if (t === undefined || t.gone()) continue;
    const kind = records[i + 1]!;
    if (kind === REC_DATA) {
      const off = records[i + 2]!;
      const len = records[i + 3]!;
      let chunk: Buffer;
      if (shared !== undefined) chunk = Buffer.from(shared, sharedAt + off, len);
      else {
        chunk = Buffer.allocUnsafe(len);
        arena.copy(chunk, 0, off, off + len);
      }
      t.onData(chunk);
    } else if (kind === REC_EOF) t.onEof();
    else if (kind === REC_ERROR) t.onError(records[i + 3]!);
    else if (kind === REC_DRAIN) t.onDrain();
    else if (kind === REC_SHUTDOWN) t.onShutdown();
  }
}

/** What is used of a net.Socket's libuv handle: Node's own reading is stopped while the addon reads. */
type TcpHandle = Pick<StreamHandle, 'reading' | 'readStart' | 'readStop'>;

/** The socket's handle when it is a plain TCP one (TLS and pipes stay on other transports). */
function tcpHandleOf(socket: Duplex): TcpHandle | undefined {
  const h = plainTcpHandle(socket);
  return h === undefined || typeof h.readStart !== 'function' || typeof h.readStop !== 'function' ? undefined : (h as TcpHandle);
}

/**
 * A native transport for `socket`, or undefined when it must use another: the addon lacks batched I/O, the socket is
 * not plain TCP, bytes already sit in its Readable or Writable (ours would overtake them), or the descriptor cannot
 * be duplicated (out of descriptors: the handle transport needs none). A socket still connecting is taken over
 * once it is up.
 */
export function createNativeTransport(socket: Duplex, sink: TransportSink): Http1Transport | undefined {
  if (batch === undefined || socket.destroyed || socket.readableLength !== 0 || socket.writableLength !== 0) return undefined;
  const handle = tcpHandleOf(socket);
  if (handle === undefined) return undefined;
  const s = socket as net.Socket;
  const id = nextId++;
  if (s.connecting) return new NativeTransport(s, handle, batch.io, sink, id, undefined);
  const fd = socketFd(s);
  if (fd === undefined) return undefined;
  let conn: object;
  try {
    conn = batch.io.ioOpen(fd, id);
  } catch {
    return undefined;
  }
  return new NativeTransport(s, handle, batch.io, sink, id, conn);
}

class NativeTransport implements Http1Transport {
  readonly socket: net.Socket;
  readonly #io: NativeIo;
  readonly #sink: TransportSink;
  readonly #id: number;
  readonly #handle: TcpHandle;
  /** The addon's connection, held for its lifetime (the per-request calls name it by #slot and #id). */
  #conn: object | undefined;
  #slot = -1;
  /** Writes made before the connection was up (none expected; kept in order if any). */
  #early: [Buffer | string, Buffer | undefined][] = [];
  #paused = false;
  #eof = false;
  #ending = false;
  #shutDown = false;
  #released = false;
  #error: Error | undefined;

  /** `conn` is the addon's connection when the socket is up; a connecting socket is opened on 'connect'. */
  constructor(socket: net.Socket, handle: TcpHandle, io: NativeIo, sink: TransportSink, id: number, conn: object | undefined) {
    this.socket = socket;
    this.#handle = handle;
    this.#io = io;
    this.#sink = sink;
    this.#id = id;
    // Node's Readable must never read the original descriptor: with `reading` set it believes it already does.
    if (handle.reading) handle.readStop();
    handle.reading = true;
    socket.on('error', (err: Error) => {
      this.#error ??= err;
    });
    socket.on('close', () => {
      this.#closeNative();
      sink.onClose(this.#error);
    });
    if (conn !== undefined) this.#start(conn);
    else socket.once('connect', () => this.#open());
  }

  /** The socket just connected: duplicate its descriptor now. */
  #open(): void {
    if (this.socket.destroyed || this.#released) return;
    const fd = socketFd(this.socket);
    let conn: object;
    try {
      if (fd === undefined) throw new Error('no descriptor');
      conn = this.#io.ioOpen(fd, this.#id);
    } catch (err) {
      // Out of descriptors for the duplicate: the connection cannot be served; its owner sees the close.
      this.#error = err as Error;
      this.socket.destroy();
      return;
    }
    this.#start(conn);
  }

  #start(conn: object): void {
    this.#conn = conn;
    this.#slot = this.#io.ioSlot(conn);
    open.set(this.#id, this);
    if (!this.#paused) this.#io.ioResume(this.#slot, this.#id);
    const ending = this.#ending;
    this.#ending = false;
    const early = this.#early;
    this.#early = [];
    for (const [data, body] of early) this.#write(data, body);
    if (ending) {
      this.#ending = true;
      this.#end();
    }
  }

  #closeNative(): void {
    open.delete(this.#id);
    if (this.#conn !== undefined) this.#io.ioClose(this.#conn);
    this.#conn = undefined;
  }

  /** The socket was destroyed (net.Socket drops its handle at once; 'close' follows a tick later). */
  gone(): boolean {
    return (this.socket as unknown as { _handle: unknown })._handle === null;
  }

  onData(chunk: Buffer): void {
    this.#sink.onData(chunk);
  }

  onEof(): void {
    this.#eof = true;
    this.#sink.onEnd();
    if (this.socket.destroyed) return;
    if (this.#shutDown) this.socket.destroy();
    // allowHalfOpen off: Node ends our side too once the peer's FIN arrived (the shutdown's completion destroys).
    else if (!this.socket.allowHalfOpen) this.end();
  }

  onError(errno: number): void {
    this.#fail(errnoError(errno, 'read'));
  }

  onDrain(): void {
    if (!this.socket.destroyed) this.#sink.onDrain();
  }

  onShutdown(): void {
    this.#shutDown = true;
    // Both directions done: what Node's autoDestroy does after 'end' and 'finish'.
    if (this.#eof && !this.socket.destroyed) this.socket.destroy();
  }

  #fail(err: Error): void {
    this.#error ??= err;
    this.socket.destroy();
  }

  #write(data: Buffer | string, body: Buffer | undefined): boolean {
    if (this.#released || this.gone()) return false;
    const conn = this.#conn;
    if (conn === undefined) {
      this.#early.push([data, body]);
      return true;
    }
    if (this.#ending) return false;
    // Without a body the call carries no third argument: the addon inspects every argument it is given.
    return this.#result(body === undefined ? this.#io.ioWrite(this.#slot, this.#id, data) : this.#io.ioWrite(this.#slot, this.#id, data, body));
  }

  #result(r: number): boolean {
    if (r < 0) {
      this.#fail(errnoError(r, 'write'));
      return false;
    }
    return r === 1;
  }

  writeSpliced(head: Buffer, lines: string, body: Buffer | undefined): boolean {
    const conn = this.#conn;
    if (conn === undefined || this.#ending || this.#released || this.gone()) return this.#write(extendedVerbatimHead(head, lines, body, body?.length ?? 0), undefined);
    return this.#result(body === undefined ? this.#io.ioWriteSpliced(this.#slot, this.#id, head, lines) : this.#io.ioWriteSpliced(this.#slot, this.#id, head, lines, body));
  }

  write(data: Buffer | string): boolean {
    return this.#write(data, undefined);
  }

  writeHead(head: string, body: Buffer): boolean {
    return this.#write(head, body.length === 0 ? undefined : body);
  }

  pause(): void {
    this.#paused = true;
    if (this.#conn !== undefined) this.#io.ioPause(this.#slot, this.#id);
  }

  resume(): void {
    this.#paused = false;
    if (this.#conn !== undefined && !this.#released) this.#io.ioResume(this.#slot, this.#id);
  }

  end(last?: Buffer): void {
    if (last !== undefined) this.#write(last, undefined);
    if (this.#ending || this.#released || this.socket.destroyed) return;
    this.#ending = true;
    if (this.#conn !== undefined) this.#end();
  }

  #end(): void {
    if (this.#io.ioEnd(this.#slot, this.#id) === 1) this.onShutdown();
  }

  destroy(): void {
    this.socket.destroy();
  }

  release(): Duplex {
    if (this.#released) return this.socket;
    this.#released = true;
    open.delete(this.#id);
    const unsent = this.#conn === undefined ? undefined : this.#io.ioRelease(this.#conn);
    this.#conn = undefined;
    const socket = this.socket;
    if (socket.destroyed) return socket;
    // Node's stream machinery takes over the original descriptor: what the addon had not sent goes first.
    if (unsent !== undefined) socket.write(unsent);
    for (const [data, body] of this.#early) {
      socket.write(data, 'latin1');
      if (body !== undefined) socket.write(body);
    }
    this.#early = [];
    if (this.#eof) socket.push(null);
    // Still connecting: net starts reading itself once connected.
    else if (socket.connecting) this.#handle.reading = false;
    // Node's Readable believes it is reading already (and may be waiting on a read it asked for): start the handle,
    // as net's own readStart would, and the bytes reach the Readable for whoever consumes it.
    else this.#handle.readStart();
    return socket;
  }
}
