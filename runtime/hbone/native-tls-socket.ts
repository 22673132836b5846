/**
 * An HBONE connection whose TLS and tunnel DATA run in the addon (runtime/native/weft-tls.c, weft-h2.c), seen from
 * JavaScript as the Duplex node:http2 reads and writes (control frames, CONNECT headers), plus `markNative`, which
 * hands an accepted stream's bytes to C. `loadNativeHbone()` is undefined when the addon lacks it or
 * WEFT_HBONE_NATIVE=0, and the callers use Node's TLS and stream splice instead.
 */
import type { X509Certificate } from 'node:crypto';
import type net from 'node:net';
import { Duplex } from 'node:stream';
import { ENV, envValue } from '../config/defaults.js';
import { WeftError } from '../errors.js';
import { loadNativeSocket, socketFd } from '../native/weft-socket.js';
import type { WorkloadCertificate } from '../identity/workload-certificate.js';
import type { HandleCopy, HandleCopyEnd } from '../l4/handle-copy.js';
import { normalizeIp } from '../l4/original-destination.js';
import { certificateOfDer } from './certificate-of-der.js';

type NativeEvent = (kind: number, streamId: number, x: number, y: number, z: number, data: Buffer | undefined) => void;

export interface NativeHbone {
  hboneContext(certChainPem: string, keyPem: string, rootsPem: string, server: boolean): object;
  hboneOpen(ctx: object, fd: number, server: boolean, session: Buffer | null, keylog: boolean, localWindow: number, localMaxFrame: number, onEvent: NativeEvent): object;
  hboneWrite(conn: object, data: Buffer): number;
  hboneEnd(conn: object): void;
  hboneClose(conn: object): void;
  hboneInfo(conn: object): NativeTlsInfoRaw | undefined;
  /** Connections whose TLS state is still allocated, in every thread of the process: a closed one frees it at once. */
  hboneHeld(): number;
  hboneNative(conn: object, streamId: number, fd: number, armed: boolean): number;
  hboneStreamAbort(conn: object, streamId: number): void;
  hboneStreamIdleMs(conn: object, streamId: number): number;
  hboneStreamDrain(conn: object, streamId: number): void;
}

interface NativeTlsInfoRaw {
  alpn: string | null;
  resumed: boolean;
  verifyError: string | null;
  verifyCode: number;
  peerCertificate: Buffer | null;
  cipher: string;
  version: string;
}

export interface NativeTlsInfo {
  alpn: string | undefined;
  resumed: boolean;
  /** Why the peer's chain did not verify against the mesh roots; undefined when it did. */
  verifyError: string | undefined;
  peerCertificate: X509Certificate | undefined;
  cipher: string;
  version: string;
}

/** OpenSSL's X509_V_ERR_* numbers by the names Node gives them (TLSSocket#authorizationError), which logs and tests use. */
const X509_ERRORS: Record<number, string> = {
  2: 'UNABLE_TO_GET_ISSUER_CERT', 4: 'UNABLE_TO_DECRYPT_CERT_SIGNATURE', 6: 'UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY', 7: 'CERT_SIGNATURE_FAILURE',
  9: 'CERT_NOT_YET_VALID', 10: 'CERT_HAS_EXPIRED', 13: 'ERROR_IN_CERT_NOT_BEFORE_FIELD', 14: 'ERROR_IN_CERT_NOT_AFTER_FIELD',
  18: 'DEPTH_ZERO_SELF_SIGNED_CERT', 19: 'SELF_SIGNED_CERT_IN_CHAIN', 20: 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 21: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  22: 'CERT_CHAIN_TOO_LONG', 23: 'CERT_REVOKED', 24: 'INVALID_CA', 25: 'PATH_LENGTH_EXCEEDED', 26: 'INVALID_PURPOSE', 27: 'CERT_UNTRUSTED', 28: 'CERT_REJECTED',
};

const EV = { handshake: 1, data: 2, drain: 3, session: 4, keylog: 5, streamEnd: 6, streamDone: 7, closed: 8 } as const;
/** errno values the addon reports for a stream: ended on the tunnel's side (the peer's RST_STREAM, the connection failed), aborted by JavaScript. */
const ECONNABORTED = 103;
const ECANCELED = 125;

function load(): NativeHbone | undefined {
  if (envValue(ENV.hboneNative) === '0') return undefined;
  const native = loadNativeSocket() as unknown as Partial<NativeHbone> | null;
  return native !== null && typeof native.hboneOpen === 'function' && typeof native.hboneNative === 'function' ? (native as NativeHbone) : undefined;
}

let cached: NativeHbone | undefined | null = null;

/** The addon's HBONE functions, or undefined (not built, built before them, or WEFT_HBONE_NATIVE=0). */
export function loadNativeHbone(): NativeHbone | undefined {
  if (cached === null) cached = load();
  return cached;
}

const contexts = new WeakMap<WorkloadCertificate, { client?: object; server?: object }>();

/** One SSL_CTX per certificate and role; a rotated certificate gets new ones (and a server new ticket keys). */
function contextFor(native: NativeHbone, cert: WorkloadCertificate, server: boolean): object {
  let entry = contexts.get(cert);
  if (entry === undefined) {
    entry = {};
    contexts.set(cert, entry);
  }
  const key = server ? 'server' : 'client';
  let ctx = entry[key];
  if (ctx === undefined) {
    ctx = native.hboneContext(cert.certChainPem.join(''), cert.privateKeyPem, cert.rootsPem.join(''), server);
    entry[key] = ctx;
  }
  return ctx;
}

export interface NativeOpenOptions {
  cert: WorkloadCertificate;
  server: boolean;
  /** A TLS session (ticket) to resume, from a 'session' event of an earlier connection. */
  session?: Buffer;
  /** Emit 'keylog' (NSS key log lines) for captures in tests. */
  keylog?: boolean;
  localWindow: number;
  localMaxFrame: number;
}

interface StreamHooks {
  end: () => void;
  done: (bytesIn: number, bytesOut: number, errno: number) => void;
}

/** The Duplex node:http2 runs its session on; 'session' and 'keylog' events as a TLSSocket's. */
export class NativeTlsSocket extends Duplex {
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly localAddress: string;
  readonly localPort: number;
  readonly encrypted = true;
  alpnProtocol: string | false = false;
  readonly #native: NativeHbone;
  readonly #conn: object;
  readonly #streams = new Map<number, StreamHooks>();
  #drain: (() => void) | undefined;
  #handshake: { resolve: (info: NativeTlsInfo) => void; reject: (err: Error) => void } | undefined;
  #closed = false;
  /** Connections and streams the addon took over in this thread (tests check which path ran). */
  static readonly counts = { connections: 0, streams: 0 };

  /** Takes over a connected socket (Node's socket is destroyed; the addon holds a duplicate of its descriptor). */
  static open(native: NativeHbone, socket: net.Socket, opts: NativeOpenOptions): NativeTlsSocket {
    const fd = socketFd(socket);
    if (fd === undefined) throw new WeftError('WEFT_ERR_NATIVE_UNAVAILABLE', 'native HBONE needs a connected socket with a descriptor');
    const ns = new NativeTlsSocket(native, fd, socket, opts);
    socket.destroy();
    NativeTlsSocket.counts.connections++;
    return ns;
  }

  private constructor(native: NativeHbone, fd: number, socket: net.Socket, opts: NativeOpenOptions) {
    super({ allowHalfOpen: false, readableHighWaterMark: 256 * 1024 });
    this.#native = native;
    this.remoteAddress = normalizeIp(socket.remoteAddress);
    this.remotePort = socket.remotePort ?? 0;
    this.localAddress = normalizeIp(socket.localAddress);
    this.localPort = socket.localPort ?? 0;
    const ctx = contextFor(native, opts.cert, opts.server);
    this.#conn = native.hboneOpen(ctx, fd, opts.server, opts.session ?? null, opts.keylog === true, opts.localWindow, opts.localMaxFrame, (kind, sid, x, y, z, data) => this.#onEvent(kind, sid, x, y, z, data));
  }

  /** Resolves once the handshake finished (the peer is not yet checked: the caller does that with the info). */
  handshake(): Promise<NativeTlsInfo> {
    return new Promise((resolve, reject) => (this.#handshake = { resolve, reject }));
  }

  /**
   * Hands stream `streamId`'s DATA to the addon, moving bytes between the TLS connection and `socket` (destroyed here on
   * success). `armed` false: node:http2 has not yet written the stream's response HEADERS, which must go first.
   * Nothing may have been written on the stream before. Undefined when the addon refused (the caller splices in JS).
   */
  markNative(streamId: number, socket: net.Socket, armed: boolean, stream: { end: () => void }): (HandleCopy & { drain: () => void }) | undefined {
    const fd = socketFd(socket);
    if (fd === undefined || this.#closed) return undefined;
    if (this.#native.hboneNative(this.#conn, streamId, fd, armed) !== 0) return undefined;
    socket.destroy();
    NativeTlsSocket.counts.streams++;
    const done = new Promise<HandleCopyEnd>((resolve) => {
      this.#streams.set(streamId, {
        end: () => stream.end(),
        done: (bytesIn, bytesOut, errno) => {
          this.#streams.delete(streamId);
          // aToB: the plaintext socket's bytes to the peer; bToA: the peer's DATA to the socket (as copy.ts counts).
          resolve({ aToB: bytesOut, bToA: bytesIn, ...(errno === 0 ? {} : { error: { side: errno === -ECONNABORTED ? 'b' : 'a', code: errno } }) });
        },
      });
    });
    return {
      abort: () => this.#native.hboneStreamAbort(this.#conn, streamId),
      drain: () => this.#native.hboneStreamDrain(this.#conn, streamId),
      idleFor: () => Math.max(0, this.#native.hboneStreamIdleMs(this.#conn, streamId)),
      done,
    };
  }

  /** True when the stream ended on the tunnel's side or by JavaScript's abort: nothing to reset on node:http2's stream. */
  static isQuietEnd(errno: number): boolean {
    return errno === -ECONNABORTED || errno === -ECANCELED;
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    const r = this.#native.hboneWrite(this.#conn, chunk);
    if (r === 1) cb();
    else if (r === 0) this.#drain = () => cb();
    // -1: the addon closed the connection and its CLOSED event (with the reason, an error or not) is already queued
    // and destroys this Duplex; the bytes had nowhere to go. No Error here: node:http2 writes its last frames into
    // every connection the peer closed, and an Error per connection (stack and all) was 3% of connection setup's CPU.
    else cb();
  }

  /** node:http2 writes a frame's header and payload as separate buffers: one call, one TLS record where they fit. */
  override _writev(chunks: { chunk: Buffer }[], cb: (err?: Error | null) => void): void {
    this._write(chunks.length === 1 ? (chunks[0] as { chunk: Buffer }).chunk : Buffer.concat(chunks.map((c) => c.chunk)), 'binary', cb);
  }

  override _read(): void {
    // The addon pushes as bytes arrive; node:http2's own flow control bounds them.
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.#native.hboneEnd(this.#conn);
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    if (!this.#closed) this.#native.hboneClose(this.#conn);
    cb(err);
  }

  setNoDelay(): this {
    return this;
  }

  setKeepAlive(): this {
    return this;
  }

  setTimeout(): this {
    return this;
  }

  #onEvent(kind: number, sid: number, x: number, y: number, z: number, data: Buffer | undefined): void {
    switch (kind) {
      case EV.data:
        if (data !== undefined) this.push(data);
        return;
      case EV.handshake: {
        const raw = this.#native.hboneInfo(this.#conn);
        if (raw === undefined) return;
        this.alpnProtocol = raw.alpn ?? false;
        const info: NativeTlsInfo = {
          alpn: raw.alpn ?? undefined,
          resumed: raw.resumed,
          verifyError: raw.verifyError === null ? undefined : (X509_ERRORS[raw.verifyCode] ?? raw.verifyError),
          peerCertificate: raw.peerCertificate === null ? undefined : certificateOfDer(raw.peerCertificate),
          cipher: raw.cipher,
          version: raw.version,
        };
        this.#handshake?.resolve(info);
        this.#handshake = undefined;
        return;
      }
      case EV.drain: {
        const drain = this.#drain;
        this.#drain = undefined;
        drain?.();
        return;
      }
      case EV.session:
        if (data !== undefined) this.emit('session', data);
        return;
      case EV.keylog:
        if (data !== undefined) this.emit('keylog', Buffer.concat([data, Buffer.from('\n')]));
        return;
      case EV.streamEnd:
        this.#streams.get(sid)?.end();
        return;
      case EV.streamDone:
        this.#streams.get(sid)?.done(x, y, z);
        return;
      case EV.closed: {
        this.#closed = true;
        const reason = data?.toString() ?? 'closed';
        const err = z === 0 ? undefined : new WeftError('WEFT_ERR_TLS', `HBONE connection to ${this.remoteAddress}:${this.remotePort} failed: ${reason}`);
        this.#handshake?.reject(err ?? new WeftError('WEFT_ERR_TLS', `HBONE connection closed during the handshake: ${reason}`));
        this.#handshake = undefined;
        const drain = this.#drain;
        this.#drain = undefined;
        drain?.();
        if (err !== undefined) this.destroy(err);
        else {
          this.push(null);
          this.destroy();
        }
        return;
      }
      default:
        return;
    }
  }
}
