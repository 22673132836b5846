/** The HBONE client: opens (or reuses from the pool) an mTLS HTTP/2 connection to `via`, verifies the server's SPIFFE identity, and sends one CONNECT per tunnel. */
import type { X509Certificate } from 'node:crypto';
import type http2 from 'node:http2';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import type { HboneConfig } from '../config/config-schema.js';
import { ENV, HBONE_DEFAULTS } from '../config/defaults.js';
import { WeftError, systemErrorCode, type ErrorCode } from '../errors.js';
import { createLogger, type Logger } from '../log.js';
import type { CertificateManager } from '../identity/certificate-manager.js';
import { formatAddr, type SocketAddr } from '../l4/original-destination.js';
import { egressSocket, type Egress } from '../l4/egress.js';
import { ConnectionPool, poolKey, type PooledConnection } from './connection-pool.js';
import { HBONE_ALPN, isExpired, matchesExpectedSans, peerCertificate, secureContextFor } from './hbone-tls.js';
import { identityOfCertificate } from '../identity/spiffe-id.js';
import { TlsSessionCache } from './tls-session-cache.js';
import { formatAuthority, formatForwarded, newTraceparent } from './hbone-headers.js';
import { h2Settings } from './h2-settings.js';
import { loadNativeHbone, NativeTlsSocket, type NativeHbone } from './native-tls-socket.js';
import type { WorkloadCertificate } from '../identity/workload-certificate.js';
import type { HandleCopy } from '../l4/handle-copy.js';

export interface HboneConnectRequest {
  /** SPIFFE ID of the local source workload; its certificate is presented. */
  sourceIdentity: string;
  /** Local address to bind (the source pod IP) when the platform allows it; part of the pool key. */
  sourceAddress?: string;
  /** Open the TCP connection inside the source pod's network namespace (in-pod capture); `sourceAddress` is then only the pool key. */
  egress?: Egress;
  /** What CONNECT asks for (`:authority`): the destination pod IP:targetPort, or the service VIP:port via a waypoint. */
  destination: SocketAddr;
  /** Identities the server may present (the destination workload's, or the waypoint's). */
  destinationIdentities: readonly string[];
  /** Where the TLS connection goes: `podIP:15008` or the waypoint's HBONE address. */
  via: SocketAddr;
  /** The original client, sent as `forwarded: for="ip:port"`. */
  forwardedFor?: SocketAddr;
  /** Service hostname for `forwarded: ...;host=` (telemetry hint for the destination). */
  forwardedHost?: string;
  baggage?: string;
  traceparent?: string;
  timeoutMs?: number;
  signal?: AbortSignal;
}

/**
 * The CONNECT stream with byte counters (the L4 copy reads them like a socket's). `nativeCopy`, on streams of native
 * connections, hands the tunnel's DATA and a plaintext socket to the addon (copy.ts calls it before copying in JS).
 */
export type HboneStream = Duplex & { bytesRead: number; bytesWritten: number; peerIdentity: string; nativeCopy?: (socket: net.Socket) => HandleCopy | undefined };

/** A rejected or failed tunnel; `status` is the server's HTTP status, or undefined when TLS or TCP failed first. */
export class HboneError extends WeftError {
  readonly status: number | undefined;
  constructor(code: ErrorCode, message: string, status?: number, options?: { cause?: unknown }) {
    super(code, message, options);
    this.status = status;
  }
}

const CODE_BY_STATUS: Record<number, ErrorCode> = { 400: 'WEFT_ERR_BAD_REQUEST', 401: 'WEFT_ERR_POLICY_DENIED', 503: 'WEFT_ERR_UPSTREAM_CONNECT' };
/** ztunnel: first keepalive PING after a delay, then every 10 s, dropped when unanswered for 20 s. */
const PING_INTERVAL_MS = 10_000;
const PING_TIMEOUT_MS = 20_000;
const WRITE_QUEUE_LIMIT = 1024 * 1024;

/** RFC 9113 §7 error codes (node:http2's constants, without loading it at start-up). */
const NGHTTP2_CANCEL = 0x8;
const NGHTTP2_CONNECT_ERROR = 0xa;

export interface HboneClientOptions {
  certificates: CertificateManager;
  settings?: Partial<HboneConfig>;
  connectTimeoutMs?: number;
  logger?: Logger;
  /**
   * Resume TLS 1.3 sessions with servers that issued tickets (default on; `WEFT_HBONE_RESUMPTION=0` turns it off). The
   * resumed connection's server identity is checked as on a full handshake.
   */
  resumeSessions?: boolean;
  /** Where tickets are kept (one per client by default; shared only to model one node's client across instances). */
  sessionCache?: TlsSessionCache;
  /** NSS key log lines of every connection (tests decrypt captures with them). */
  onKeylog?: (line: Buffer) => void;
  /** `node` keeps every connection on Node's TLS and node:http2 (the fallback path); `auto` (default) uses the addon when it can. */
  dataPath?: 'auto' | 'node';
}

export class HboneClient {
  readonly #opts: HboneClientOptions;
  readonly #settings: Omit<HboneConfig, 'port'>;
  readonly #pool: ConnectionPool;
  readonly #log: Logger;
  readonly #sessions: TlsSessionCache | undefined;
  #handshakes = 0;
  #resumed = 0;
  /** Verified server identity per connection (read at handshake; session.socket is only a proxy). */
  readonly #peerIds = new WeakMap<http2.ClientHttp2Session, string>();
  /** The addon's connection under a session, when the native data path carries it. */
  readonly #native = new WeakMap<http2.ClientHttp2Session, NativeTlsSocket>();
  readonly #sockets = new Set<Duplex>();

  constructor(opts: HboneClientOptions) {
    this.#opts = opts;
    this.#settings = { ...HBONE_DEFAULTS, ...opts.settings };
    this.#pool = new ConnectionPool({ maxStreamsPerConnection: this.#settings.maxStreamsPerConnection, idleTimeoutMs: this.#settings.poolIdleTimeoutMs });
    this.#log = opts.logger ?? createLogger('hbone');
    this.#sessions = (opts.resumeSessions ?? process.env[ENV.hboneResumption] !== '0') ? (opts.sessionCache ?? new TlsSessionCache()) : undefined;
  }

  /** TLS handshakes completed so far (each is a new pooled connection). */
  get handshakes(): number {
    return this.#handshakes;
  }

  /** Of those, the ones that resumed a TLS session instead of a full handshake. */
  get resumedHandshakes(): number {
    return this.#resumed;
  }

  poolStats(): ReturnType<ConnectionPool['stats']> {
    return this.#pool.stats();
  }

  async connect(req: HboneConnectRequest): Promise<HboneStream> {
    const key = poolKey(req);
    const conn = await this.#pool.acquire(key, () => this.#open(req));
    let stream: http2.ClientHttp2Stream;
    try {
      stream = conn.session.request(
        {
          ':method': 'CONNECT',
          ':authority': formatAuthority(req.destination),
          ...(req.forwardedFor === undefined ? {} : { forwarded: formatForwarded(req.forwardedFor, req.forwardedHost) }),
          ...(req.baggage === undefined ? {} : { baggage: req.baggage }),
          traceparent: req.traceparent ?? newTraceparent(),
        },
        { endStream: false },
      );
    } catch (err) {
      this.#pool.release(conn);
      throw new HboneError('WEFT_ERR_UPSTREAM_CONNECT', `HBONE CONNECT to ${formatAddr(req.destination)} via ${formatAddr(req.via)} failed: ${(err as Error).message}`, undefined, { cause: err });
    }
    stream.once('close', () => this.#pool.release(conn));
    return this.#awaitResponse(stream, conn, req);
  }

  close(): void {
    this.#pool.close();
    // A destroyed Http2Session only ends its socket and waits for queued bytes; closing the client ends them now.
    for (const s of this.#sockets) s.destroy();
  }

  #awaitResponse(stream: http2.ClientHttp2Stream, conn: PooledConnection, req: HboneConnectRequest): Promise<HboneStream> {
    const where = `${formatAddr(req.destination)} via ${formatAddr(req.via)}`;
    return new Promise<HboneStream>((resolve, reject) => {
      const timer = setTimeout(() => fail(new HboneError('WEFT_ERR_UPSTREAM_TIMEOUT', `HBONE CONNECT to ${where} got no response within ${this.#timeout(req)} ms`)), this.#timeout(req));
      const onAbort = (): void => fail(new HboneError('WEFT_ERR_UPSTREAM_CONNECT', `HBONE CONNECT to ${where} abandoned: the client went away`));
      const cleanup = (): void => {
        clearTimeout(timer);
        req.signal?.removeEventListener('abort', onAbort);
        stream.off('error', onError);
        stream.off('close', onClose);
      };
      const fail = (err: HboneError): void => {
        cleanup();
        stream.close(NGHTTP2_CANCEL);
        reject(err);
      };
      const onError = (err: Error): void => fail(new HboneError('WEFT_ERR_UPSTREAM_CONNECT', `HBONE CONNECT to ${where} failed: ${err.message}`, undefined, { cause: err }));
      const onClose = (): void => fail(new HboneError('WEFT_ERR_UPSTREAM_CONNECT', `HBONE stream to ${where} closed before a response`));
      stream.once('error', onError);
      stream.once('close', onClose);
      req.signal?.addEventListener('abort', onAbort, { once: true });
      stream.once('response', (headers) => {
        const status = Number(headers[':status']);
        if (status !== 200) {
          const detail = typeof headers['x-weft-error'] === 'string' ? `: ${headers['x-weft-error']}` : '';
          fail(new HboneError(CODE_BY_STATUS[status] ?? 'WEFT_ERR_UPSTREAM_CONNECT', `HBONE CONNECT to ${where} answered ${status}${detail}`, status));
          return;
        }
        cleanup();
        resolve(withCounters(stream, this.#peerIds.get(conn.session) ?? '', this.#native.get(conn.session)));
      });
    });
  }

  #timeout(req: HboneConnectRequest): number {
    return req.timeoutMs ?? this.#opts.connectTimeoutMs ?? 10_000;
  }

  /** A new mTLS + HTTP/2 connection whose server proves one of the expected identities. */
  async #open(req: HboneConnectRequest): Promise<http2.ClientHttp2Session> {
    const cert = await this.#opts.certificates.fetch(req.sourceIdentity);
    const where = formatAddr(req.via);
    const nativeHbone = this.#opts.dataPath === 'node' ? undefined : loadNativeHbone();
    const tls = nativeHbone === undefined ? await this.#handshakeNode(req, cert, where) : await this.#handshakeNative(nativeHbone, req, cert, where);
    this.#handshakes++;
    if (tls.resumed) this.#resumed++;
    const session = http2Module().connect(authorityOf(where), {
      createConnection: () => tls.socket,
      settings: h2Settings(this.#settings),
      maxSessionMemory: 256,
    });
    this.#peerIds.set(session, identityOfCertificate(tls.verified) ?? '');
    if (tls.socket instanceof NativeTlsSocket) this.#native.set(session, tls.socket);
    this.#sockets.add(tls.socket);
    tls.socket.once('close', () => this.#sockets.delete(tls.socket));
    session.on('error', (err) => this.#log.debug({ via: where, err }, 'hbone connection error'));
    session.once('connect', () => session.setLocalWindowSize(this.#settings.connectionWindowBytes));
    keepAlive(session);
    return session;
  }

  /** The server's identity check shared by both TLS paths; a failure forgets the server's tickets. */
  #checkServer(req: HboneConnectRequest, cert: WorkloadCertificate, where: string, peerCert: X509Certificate | undefined, resumed: boolean, alpn: string | undefined): HboneError | undefined {
    const expired = peerCert !== undefined && resumed && isExpired(peerCert);
    if (peerCert === undefined || expired || !matchesExpectedSans(peerCert, req.destinationIdentities)) {
      this.#sessions?.forget(cert, where);
      const got = peerCert === undefined ? 'no certificate' : expired ? 'an expired certificate (resumed session)' : (identityOfCertificate(peerCert) ?? 'no SPIFFE identity');
      this.#log.warn({ via: where, expected: req.destinationIdentities, got }, 'hbone server identity mismatch');
      return new HboneError('WEFT_ERR_TLS', `HBONE server at ${where} presented ${got}, expected one of ${req.destinationIdentities.join(', ')}`);
    }
    if (alpn !== 'h2') return new HboneError('WEFT_ERR_TLS', `HBONE server at ${where} did not negotiate ALPN h2`);
    return undefined;
  }

  /** Node's TLS (the fallback path, WEFT_HBONE_NATIVE=0 or no addon). */
  #handshakeNode(req: HboneConnectRequest, cert: WorkloadCertificate, where: string): Promise<{ socket: Duplex; verified: X509Certificate; resumed: boolean }> {
    const sessions = this.#sessions;
    const resumable = sessions?.get(cert, where);
    let verified: X509Certificate | undefined;
    return new Promise((resolve, reject) => {
      // No servername: HBONE sends no SNI (an IP cannot be one, and the server picks its certificate by destination).
      const s = process.getBuiltinModule('node:tls').connect({
        ...(req.egress !== undefined
          ? { socket: egressSocket(req.egress, req.via) }
          : { host: req.via.address, port: req.via.port, ...(req.sourceAddress === undefined ? {} : { localAddress: req.sourceAddress }) }),
        secureContext: secureContextFor(cert),
        ...(resumable === undefined ? {} : { session: resumable.ticket }),
        ALPNProtocols: HBONE_ALPN,
        rejectUnauthorized: true,
        // The server is verified by SPIFFE identity below, not by hostname.
        checkServerIdentity: () => undefined,
      });
      s.setNoDelay(true);
      if (this.#opts.onKeylog !== undefined) s.on('keylog', this.#opts.onKeylog);
      // TLS 1.3 tickets may arrive before 'secureConnect' is handled; they are kept only once the server is verified,
      // each with the certificate it was verified by (a resumed handshake carries no certificate to check again).
      const early: Buffer[] = [];
      if (sessions !== undefined) s.on('session', (t: Buffer) => (verified === undefined ? early.push(t) : sessions.put(cert, where, t, verified)));
      const timer = setTimeout(() => done(new HboneError('WEFT_ERR_UPSTREAM_TIMEOUT', `HBONE handshake with ${where} did not finish within ${this.#timeout(req)} ms`)), this.#timeout(req));
      const done = (err?: Error): void => {
        clearTimeout(timer);
        s.off('error', onError);
        if (err === undefined && verified !== undefined) return resolve({ socket: s, verified, resumed: s.isSessionReused() });
        s.destroy();
        reject(err ?? new HboneError('WEFT_ERR_TLS', `HBONE connection to ${where} failed`));
      };
      const onError = (err: Error): void => {
        const code = systemErrorCode(err) ?? 'error';
        done(new HboneError(code.startsWith('ERR_SSL') || code.includes('CERT') ? 'WEFT_ERR_TLS' : 'WEFT_ERR_UPSTREAM_CONNECT', `HBONE connection to ${where} failed: ${code}: ${err.message}`, undefined, { cause: err }));
      };
      s.once('error', onError);
      s.once('secureConnect', () => {
        // Resumed: the server proved it holds the session's secret, so it is the server that proved this certificate
        // on the full handshake; the identity check applies to it unchanged, and its expiry is looked at again.
        const resumed = s.isSessionReused();
        const peerCert = resumed ? resumable?.peer : peerCertificate(s);
        const failed = this.#checkServer(req, cert, where, peerCert, resumed, s.alpnProtocol === false ? undefined : (s.alpnProtocol ?? undefined));
        if (failed !== undefined) return done(failed);
        verified = peerCert;
        for (const t of early.splice(0)) sessions?.put(cert, where, t, peerCert as X509Certificate);
        done();
      });
    });
  }

  /** The addon's TLS (native-tls-socket.ts): the same checks, tickets and errors as #handshakeNode. */
  async #handshakeNative(nativeHbone: NativeHbone, req: HboneConnectRequest, cert: WorkloadCertificate, where: string): Promise<{ socket: Duplex; verified: X509Certificate; resumed: boolean }> {
    const sessions = this.#sessions;
    const resumable = sessions?.get(cert, where);
    const timeoutMs = this.#timeout(req);
    const raw = req.egress !== undefined ? egressSocket(req.egress, req.via) : net.connect({ host: req.via.address, port: req.via.port, noDelay: true, ...(req.sourceAddress === undefined ? {} : { localAddress: req.sourceAddress }) });
    let ns: NativeTlsSocket | undefined;
    const timer = setTimeout(() => {
      raw.destroy(new HboneError('WEFT_ERR_UPSTREAM_TIMEOUT', `HBONE handshake with ${where} did not finish within ${timeoutMs} ms`));
      ns?.destroy(new HboneError('WEFT_ERR_UPSTREAM_TIMEOUT', `HBONE handshake with ${where} did not finish within ${timeoutMs} ms`));
    }, timeoutMs);
    try {
      await new Promise<void>((resolve, reject) => {
        raw.once('connect', resolve);
        raw.once('error', (err: Error) => {
          const code = systemErrorCode(err) ?? 'error';
          reject(err instanceof HboneError ? err : new HboneError('WEFT_ERR_UPSTREAM_CONNECT', `HBONE connection to ${where} failed: ${code}: ${err.message}`, undefined, { cause: err }));
        });
      });
      const opened = NativeTlsSocket.open(nativeHbone, raw, { cert, server: false, localWindow: this.#settings.streamWindowBytes, localMaxFrame: this.#settings.maxFrameBytes, ...(resumable === undefined ? {} : { session: resumable.ticket }), ...(this.#opts.onKeylog === undefined ? {} : { keylog: true }) });
      ns = opened;
      if (this.#opts.onKeylog !== undefined) opened.on('keylog', this.#opts.onKeylog);
      // After the handshake node:http2's session reports the connection's end; this keeps an error from going unheard.
      opened.on('error', (err: Error) => this.#log.debug({ via: where, err }, 'hbone connection error'));
      // Tickets wait in `early` until the server is verified, then go to the cache with the certificate it proved.
      const checked: { peer?: X509Certificate } = {};
      const early: Buffer[] = [];
      if (sessions !== undefined) opened.on('session', (t: Buffer) => (checked.peer === undefined ? early.push(t) : sessions.put(cert, where, t, checked.peer)));
      const handshake = opened.handshake();
      const destroyed = new Promise<never>((_resolve, reject) => opened.once('error', reject));
      const info = await Promise.race([handshake, destroyed]);
      const peerCert = info.resumed ? resumable?.peer : info.peerCertificate;
      const failed = info.resumed || info.verifyError === undefined ? this.#checkServer(req, cert, where, peerCert, info.resumed, info.alpn) : new HboneError('WEFT_ERR_TLS', `HBONE connection to ${where} failed: server certificate rejected: ${info.verifyError}`);
      if (failed !== undefined) throw failed;
      if (peerCert === undefined) throw new HboneError('WEFT_ERR_TLS', `HBONE server at ${where} presented no certificate`);
      checked.peer = peerCert;
      for (const t of early.splice(0)) sessions?.put(cert, where, t, peerCert);
      return { socket: opened, verified: peerCert, resumed: info.resumed };
    } catch (err) {
      raw.destroy();
      ns?.destroy();
      throw err instanceof HboneError ? err : new HboneError('WEFT_ERR_TLS', `HBONE connection to ${where} failed: ${(err as Error).message}`, undefined, { cause: err });
    } finally {
      clearTimeout(timer);
    }
  }
}

let http2Loaded: typeof http2 | undefined;
const authorities = new Map<string, URL>();

/** node:http2, loaded with the first HBONE connection and then kept (process.getBuiltinModule per connection was 2% of the client's JavaScript). */
function http2Module(): typeof http2 {
  http2Loaded ??= process.getBuiltinModule('node:http2');
  return http2Loaded;
}

/** http2.connect's authority as a parsed URL, one per server address (it parses a string on every call otherwise). */
function authorityOf(where: string): URL {
  let url = authorities.get(where);
  if (url === undefined) {
    if (authorities.size >= 1024) authorities.clear();
    url = new URL(`https://${where}`);
    authorities.set(where, url);
  }
  return url;
}

/** PINGs the session every PING_INTERVAL_MS and destroys it when one stays unanswered past PING_TIMEOUT_MS (exported for its test). */
export function keepAlive(session: http2.ClientHttp2Session): void {
  let outstanding: number | undefined;
  const timer = setInterval(() => {
    // A destroyed session emits 'close' only once its socket closed (after the peer's FIN), and ping() throws until then.
    if (session.destroyed) return clearInterval(timer);
    if (outstanding !== undefined) {
      if (Date.now() - outstanding > PING_TIMEOUT_MS) session.destroy(new Error('HBONE keepalive PING unanswered'));
      return;
    }
    outstanding = Date.now();
    session.ping((err) => {
      if (err === null) outstanding = undefined;
    });
  }, PING_INTERVAL_MS);
  timer.unref();
  session.once('close', () => clearInterval(timer));
}

/** Adds socket-like byte counters to a CONNECT stream by observing its push() and write() (no extra 'data' listener, so flow is untouched). */
function withCounters(stream: http2.ClientHttp2Stream, identity: string, native: NativeTlsSocket | undefined): HboneStream {
  const s = stream as unknown as HboneStream & { push: (chunk: unknown, enc?: BufferEncoding) => boolean };
  s.bytesRead = 0;
  s.bytesWritten = 0;
  s.peerIdentity = identity;
  if (native !== undefined) {
    s.nativeCopy = (socket) => {
      // Only a stream nothing was written to or read from yet: its send window is still the initial one.
      if (s.bytesWritten !== 0 || s.writableLength !== 0 || s.readableLength !== 0 || socket.readableLength !== 0 || socket.writableLength !== 0 || stream.id === undefined) return undefined;
      const copy = native.markNative(stream.id, socket, true, stream);
      if (copy === undefined) return undefined;
      // Nothing arrives on node:http2's side of a native stream; a frame that raced the switch is dropped. Its end
      // and errors (a reset by the server) reach the copy through the addon's STREAM_DONE instead.
      stream.on('data', () => undefined);
      stream.on('error', () => undefined);
      stream.resume();
      const done = copy.done.then((end) => {
        if (end.error !== undefined && !NativeTlsSocket.isQuietEnd(end.error.code) && !stream.closed) stream.close(NGHTTP2_CONNECT_ERROR);
        return end;
      });
      return {
        abort: () => {
          copy.abort();
          if (!stream.closed) stream.close(NGHTTP2_CONNECT_ERROR);
        },
        // The drain deadline: END_STREAM to the server, FIN to the workload (runtime/native/weft-h2.c).
        drain: () => copy.drain(),
        idleFor: (now) => copy.idleFor(now),
        done,
      };
    };
  }
  // A reset by the server (RST_STREAM) must reach the consumer as an error; Node destroys the stream silently when
  // the code is CANCEL, which would leave the other half of an L4 copy waiting for an end that never comes.
  stream.once('aborted', () => {
    if (!stream.destroyed) stream.destroy(new HboneError('WEFT_ERR_UPSTREAM_CONNECT', `HBONE tunnel reset by the server (RST_STREAM ${stream.rstCode ?? 'unknown'})`));
  });
  const push = s.push.bind(s);
  s.push = (chunk: unknown, enc?: BufferEncoding): boolean => {
    if (chunk !== null && chunk !== undefined) s.bytesRead += (chunk as Buffer).length;
    return push(chunk, enc);
  };
  const write = s.write.bind(s) as (chunk: unknown, ...rest: unknown[]) => boolean;
  (s as { write: unknown }).write = (chunk: unknown, ...rest: unknown[]): boolean => {
    if (chunk !== null && chunk !== undefined) s.bytesWritten += (chunk as Buffer).length;
    // An Http2Stream asks for backpressure past 16 KiB, which makes a socket-to-stream copy pause and resume on
    // every 64 KiB read. Backpressure is signalled at WRITE_QUEUE_LIMIT instead; 'drain' still follows once the
    // queue empties, because the stream itself recorded the need for it.
    return write(chunk, ...rest) || s.writableLength < WRITE_QUEUE_LIMIT;
  };
  return s;
}
