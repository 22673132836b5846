/** The HBONE inbound listener (15008): mTLS with mandatory client certificates, then HTTP/2 CONNECT per tunnel, validated and authorized before a byte reaches the local workload. */
import type http2 from 'node:http2';
import net from 'node:net';
import type tls from 'node:tls';
import { HBONE_DEFAULTS } from '../config/defaults.js';
import { WeftError, weftErrorOf } from '../errors.js';
import { createLogger, type Logger } from '../log.js';
import type { CertificateManager } from '../identity/certificate-manager.js';
import type { ProxyState } from '../state/proxy-state.js';
import type { Service, StateSnapshot, Workload } from '../state/state-snapshot.js';
import type { HboneConfig, ServicePortConfig } from '../config/config-schema.js';
import type { Duplex } from 'node:stream';
import { formatAddr, normalizeIp, type SocketAddr } from '../l4/original-destination.js';
import { HBONE_ALPN, hasTrustDomain, isExpired, peerCertificate, tlsOptionsFor } from './hbone-tls.js';
import { identityOfCertificate } from '../identity/spiffe-id.js';
import type { X509Certificate } from 'node:crypto';
import { loadNativeHbone, NativeTlsSocket } from './native-tls-socket.js';
import type { HandleCopy } from '../l4/handle-copy.js';
import type { WorkloadCertificate } from '../identity/workload-certificate.js';
import { isTraceparent, parseAuthority, parseBaggage, parseForwarded } from './hbone-headers.js';
import { splice } from './stream-splice.js';
import { h2Settings } from './h2-settings.js';
import { DRAIN_CLOSE_GRACE_MS } from '../drain.js';

/** Everything known about one inbound tunnel when it is authorized, opened and closed. */
export interface InboundTunnel {
  /** Verified SPIFFE ID from the client's certificate. */
  sourceIdentity: string;
  /** TCP peer of the TLS connection (the source pod, or the peer node under NAT). */
  peer: SocketAddr;
  /** The original client from `forwarded: for=`, when sent. */
  forwardedFor?: SocketAddr;
  /** The local workload the CONNECT targets and its identity. */
  destination: Workload;
  destinationAddr: SocketAddr;
  baggage: Record<string, string>;
  traceparent?: string;
  snapshot: StateSnapshot;
}

/** A tunnel addressed to a service VIP that this node serves as waypoint for. */
export interface WaypointTunnel {
  sourceIdentity: string;
  peer: SocketAddr;
  forwardedFor?: SocketAddr;
  /** The service addressed (by VIP), or the workload addressed directly (`target`). */
  service?: Service;
  servicePort?: ServicePortConfig;
  target?: Workload;
  /** The local waypoint workload the tunnel was opened to. */
  waypoint: Workload;
  destinationAddr: SocketAddr;
}

export type AuthorizeResult = { allowed: true } | { allowed: false; reason: string };

export interface TunnelClosed {
  bytesReceived: number;
  bytesSent: number;
  durationMs: number;
  error?: Error;
}

export interface HboneServerOptions {
  certificates: CertificateManager;
  state: ProxyState;
  /** L4 authorization at the destination (runtime/authz); called per CONNECT and again on policy change. */
  authorize: (tunnel: InboundTunnel) => AuthorizeResult;
  /** Connects to the local workload (transparently preserving the source where possible). */
  connectUpstream: (target: SocketAddr, tunnel: InboundTunnel) => Promise<net.Socket>;
  /** Called when a tunnel is established (200 sent); `close(reason)` ends it (policy re-checks use this). */
  onConnection?: (tunnel: InboundTunnel, control: { close: (reason: string) => void; closed: Promise<TunnelClosed> }) => void;
  /** Called for every rejected CONNECT or handshake, after the log line. */
  onReject?: (event: { status: number | 'tls'; reason: string; peer: SocketAddr; sourceIdentity?: string }) => void;
  /**
   * Waypoint role: a CONNECT for `service VIP:port` arriving at a workload that is that service's waypoint goes to the
   * handler this returns, after the 200 (the L7 proxy takes the stream); no handler means 503.
   */
  waypointHandler?: () => ((stream: Duplex, tunnel: WaypointTunnel) => void) | undefined;
  /** weft's own ports on this node; a CONNECT to one of them is a loop (ztunnel's illegal ports). */
  illegalPorts?: ReadonlySet<number>;
  settings?: Partial<HboneConfig>;
  logger?: Logger;
  /** NSS key log lines of every connection (tests decrypt captures with them). */
  onKeylog?: (line: Buffer) => void;
  /** `node` keeps every connection on Node's TLS and node:http2 (the fallback path); `auto` (default) uses the addon when it can. */
  dataPath?: 'auto' | 'node';
}

export interface HboneServer {
  /** Listens on `ip:port` (port 0 picks one); may be called once per address (one per local workload IP, in-pod style). */
  listen(address: SocketAddr): Promise<SocketAddr>;
  /** Serves a socket accepted elsewhere (a transparent listener built by the L4 layer). */
  accept(socket: net.Socket): void;
  close(): Promise<void>;
  /** Drain: every session gets GOAWAY (NO_ERROR); open tunnels go on, the peer's pool opens new connections for new ones. */
  goaway(): void;
  /** Live tunnels (for drain and policy re-checks). */
  readonly activeTunnels: number;
}

/** What the handshake established about a session's connection (node:http2 hides the socket behind a proxy, and a Duplex behind a JSStreamSocket). */
interface SessionInfo {
  identity: string;
  peer: SocketAddr;
  localIp: string;
  socket: Duplex;
  native?: NativeTlsSocket;
}

/** RFC 9113 §7 error codes (node:http2's constants, without loading it). */
const H2_ERROR = { NO_ERROR: 0x0, CONNECT_ERROR: 0xa } as const;
const STATUS = { ok: 200, badRequest: 400, denied: 401, unavailable: 503 } as const;

/**
 * ztunnel's waypoint case: the CONNECT names a service VIP, or a workload address, whose waypoint resolves to the
 * local workload the tunnel reached.
 */
function waypointFor(snapshot: StateSnapshot, dst: SocketAddr, localIp: string): { service?: Service; port?: ServicePortConfig; target?: Workload; workload: Workload } | undefined {
  const target = snapshot.serviceByVip(dst.address, dst.port);
  const targetWorkload = target === undefined ? snapshot.workloadByIp(dst.address) : undefined;
  const ref = target?.service.waypoint ?? targetWorkload?.waypoint;
  if (ref === undefined) return undefined;
  const workload = snapshot.workloadByIp(localIp);
  const waypointService = snapshot.serviceByName(ref);
  if (workload === undefined || !workload.local || workload === targetWorkload || waypointService?.endpoints.includes(workload) !== true) return undefined;
  return { ...(target === undefined ? {} : { service: target.service, port: target.port }), ...(targetWorkload === undefined ? {} : { target: targetWorkload }), workload };
}

export function createHboneServer(opts: HboneServerOptions): HboneServer {
  const log = opts.logger ?? createLogger('hbone');
  const settings = { ...HBONE_DEFAULTS, ...opts.settings };
  const servers: net.Server[] = [];
  const sessions = new Set<http2.ServerHttp2Session>();
  /** Every accepted socket, so close() can end them (net.Server.close waits for its connections otherwise). */
  const sockets = new Set<Duplex>();
  const sessionInfo = new WeakMap<http2.Http2Session, SessionInfo>();
  let connecting: SessionInfo | undefined;
  let active = 0;
  // node:http2 and node:tls are loaded with the first HBONE connection, not at start-up: a node whose workloads never
  // speak HBONE (or an idle one) does not pay the ~3.5 MB of RSS they add (test/bench/README.md, idle memory).
  let h2Server: http2.Http2Server | undefined;
  const h2 = (): http2.Http2Server => {
    if (h2Server !== undefined) return h2Server;
    h2Server = process.getBuiltinModule('node:http2').createServer({
      settings: h2Settings(settings),
      maxSessionMemory: 256,
      // Peers are authenticated meshes; a big header block is still refused (ztunnel: 16 KiB header list).
      maxHeaderListPairs: 64,
    });
    h2Server.on('session', onSession);
    h2Server.on('stream', onStream);
    return h2Server;
  };

  const reject = (peer: SocketAddr, status: number | 'tls', reason: string, fields: Record<string, unknown> = {}): void => {
    log.warn({ peer: formatAddr(peer), status, reason, ...fields }, 'hbone connection rejected');
    opts.onReject?.({ status, reason, peer, ...(typeof fields.sourceIdentity === 'string' ? { sourceIdentity: fields.sourceIdentity } : {}) });
  };

  /**
   * One tls.Server per hosted identity, fed accepted sockets by hand: HBONE clients send no SNI, so the certificate is
   * chosen by the address the connection was made to, and tls.Server is what verifies client chains and sets `authorized`.
   */
  const tlsServers = new Map<string, { server: tls.Server; cert: WorkloadCertificate }>();
  const tlsServerFor = (cert: WorkloadCertificate): tls.Server => {
    const existing = tlsServers.get(cert.identity);
    if (existing !== undefined) {
      if (existing.cert !== cert) {
        // Rotation: new handshakes get the new certificate, established tunnels keep theirs. New ticket keys, so no
        // session from before the rotation resumes.
        existing.server.setSecureContext({ ...tlsOptionsFor(cert), ticketKeys: process.getBuiltinModule('node:crypto').randomBytes(48) });
        existing.cert = cert;
      }
      return existing.server;
    }
    const server = process.getBuiltinModule('node:tls').createServer({ ...tlsOptionsFor(cert), requestCert: true, rejectUnauthorized: false, ALPNProtocols: HBONE_ALPN });
    server.on('secureConnection', (socket) => onSecure(socket, cert.identity));
    if (opts.onKeylog !== undefined) server.on('keylog', opts.onKeylog);
    server.on('tlsClientError', (err: Error & { code?: string }, socket) => {
      reject({ address: normalizeIp(socket.remoteAddress), port: socket.remotePort ?? 0 }, 'tls', `TLS handshake failed: ${err.code ?? err.message}`, { localIdentity: cert.identity });
    });
    tlsServers.set(cert.identity, { server, cert });
    return server;
  };

  const onSecure = (socket: tls.TLSSocket, localIdentity: string): void => {
    const peer = { address: normalizeIp(socket.remoteAddress), port: socket.remotePort ?? 0 };
    socket.on('error', () => socket.destroy());
    admit(socket, { peer, localIp: normalizeIp(socket.localAddress), localIdentity, peerCert: peerCertificate(socket), verifyError: socket.authorized ? undefined : String(socket.authorizationError), resumed: socket.isSessionReused(), alpn: socket.alpnProtocol === false ? undefined : socket.alpnProtocol });
  };

  /** The client checks of both TLS paths (Node's tls.Server and the addon's); an admitted connection becomes an HTTP/2 session. */
  const admit = (socket: Duplex, hs: { peer: SocketAddr; localIp: string; localIdentity: string; peerCert: X509Certificate | undefined; verifyError: string | undefined; resumed: boolean; alpn: string | null | undefined; native?: NativeTlsSocket }): void => {
    const { peer, localIdentity, peerCert } = hs;
    const refuse = (reason: string, sourceIdentity?: string): void => {
      reject(peer, 'tls', reason, { localIdentity, ...(sourceIdentity === undefined ? {} : { sourceIdentity }) });
      socket.destroy();
    };
    if (peerCert === undefined) return refuse('client presented no certificate (HBONE requires mutual TLS)');
    const identity = identityOfCertificate(peerCert);
    if (hs.verifyError !== undefined) return refuse(`client certificate rejected: ${hs.verifyError}`, identity);
    // A resumed session keeps the chain's verification result from the full handshake; the leaf may have expired since.
    if (hs.resumed && isExpired(peerCert)) return refuse(`client certificate of resumed session expired at ${peerCert.validTo}`, identity);
    if (identity === undefined) return refuse('client certificate carries no SPIFFE identity');
    const trustDomain = opts.state.current.config.trustDomain;
    if (!hasTrustDomain(peerCert, trustDomain)) return refuse(`client identity ${identity} is outside trust domain ${trustDomain}`, identity);
    if (hs.alpn !== 'h2') return refuse(`client did not negotiate ALPN h2 (got ${String(hs.alpn ?? false)})`, identity);
    // node:http2 creates the session synchronously inside emit('connection'); 'session' picks this up.
    connecting = { identity, peer, localIp: hs.localIp, socket, ...(hs.native === undefined ? {} : { native: hs.native }) };
    try {
      h2().emit('connection', socket);
    } finally {
      connecting = undefined;
    }
    return undefined;
  };

  /** The addon's TLS (native-tls-socket.ts): same certificate choice and checks as tlsServerFor + onSecure. */
  const acceptNative = (raw: net.Socket, cert: WorkloadCertificate): boolean => {
    const nativeHbone = opts.dataPath === 'node' ? undefined : loadNativeHbone();
    if (nativeHbone === undefined || raw.readableLength > 0 || raw.destroyed) return false;
    const peer = { address: normalizeIp(raw.remoteAddress), port: raw.remotePort ?? 0 };
    let ns: NativeTlsSocket;
    try {
      ns = NativeTlsSocket.open(nativeHbone, raw, { cert, server: true, localWindow: settings.streamWindowBytes, localMaxFrame: settings.maxFrameBytes, ...(opts.onKeylog === undefined ? {} : { keylog: true }) });
    } catch {
      return false;
    }
    sockets.add(ns);
    ns.once('close', () => sockets.delete(ns));
    ns.on('error', () => ns.destroy());
    if (opts.onKeylog !== undefined) ns.on('keylog', opts.onKeylog);
    ns.handshake().then(
      (info) => admit(ns, { peer, localIp: ns.localAddress, localIdentity: cert.identity, peerCert: info.peerCertificate, verifyError: info.verifyError, resumed: info.resumed, alpn: info.alpn, native: ns }),
      (err: Error) => reject(peer, 'tls', `TLS handshake failed: ${err.message}`, { localIdentity: cert.identity }),
    );
    return true;
  };

  const onSocket = (raw: net.Socket): void => {
    sockets.add(raw);
    raw.once('close', () => sockets.delete(raw));
    raw.setNoDelay(true);
    raw.on('error', () => raw.destroy());
    const peer = { address: normalizeIp(raw.remoteAddress), port: raw.remotePort ?? 0 };
    const localIp = normalizeIp(raw.localAddress);
    const serving = opts.state.current.workloadByIp(localIp);
    // The server's certificate is the destination's: the listener is reached at the pod IP (in-pod, TPROXY or per-IP listeners).
    if (serving === undefined || !serving.local) {
      reject(peer, 'tls', `connection to ${localIp}, which is not a workload hosted on this node`);
      raw.destroy();
      return;
    }
    const held = opts.certificates.current(serving.identity);
    if (held !== undefined && held.notAfter.getTime() > Date.now()) {
      if (!acceptNative(raw, held)) tlsServerFor(held).emit('connection', raw);
      return;
    }
    raw.pause();
    opts.certificates.fetch(serving.identity).then(
      (cert) => {
        if (!raw.destroyed && !acceptNative(raw, cert)) tlsServerFor(cert).emit('connection', raw);
      },
      (err: unknown) => {
        reject(peer, 'tls', `no certificate for local identity ${serving.identity}: ${weftErrorOf(err)?.message ?? String(err)}`);
        raw.destroy();
      },
    );
  };

  const onSession = (session: http2.ServerHttp2Session): void => {
    const connection = connecting?.socket;
    if (connecting !== undefined) sessionInfo.set(session, connecting);
    sessions.add(session);
    session.once('close', () => sessions.delete(session));
    session.on('error', () => session.destroy());
    // node:http2 only ends the socket of a failed session (close_notify, FIN) and waits for the peer; a peer that sent
    // a malformed frame does not get to keep the connection open.
    session.once('close', () => connection?.destroy());
    // The client's connection went away (FIN or reset): its tunnels end now, not at the next keepalive.
    connection?.once('close', () => session.destroy());
    connection?.once('end', () => connection.destroy());
    session.once('connect', () => session.setLocalWindowSize(settings.connectionWindowBytes));
  };

  const onStream = (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): void => {
    const info = stream.session === undefined ? undefined : sessionInfo.get(stream.session);
    const sourceIdentity = info?.identity;
    const peer = info?.peer ?? { address: '', port: 0 };
    stream.on('error', () => stream.destroy());
    const respond = (status: number, reason: string, extra: Record<string, unknown> = {}): void => {
      reject(peer, status, reason, { sourceIdentity, authority: headers[':authority'], ...extra });
      if (!stream.destroyed && !stream.headersSent) stream.respond({ ':status': status, 'x-weft-error': reason.slice(0, 200) }, { endStream: true });
    };
    if (sourceIdentity === undefined) return respond(STATUS.badRequest, 'tunnel has no verified identity');
    if (headers[':method'] !== 'CONNECT') return respond(STATUS.badRequest, `method ${String(headers[':method'])} is not CONNECT`);
    const dst = parseAuthority(headers[':authority']);
    if (dst === undefined) return respond(STATUS.badRequest, `:authority ${String(headers[':authority'])} is not ip:port`);
    const snapshot = opts.state.current;
    const localIp = info?.localIp ?? '';
    const waypoint = waypointFor(snapshot, dst, localIp);
    if (waypoint !== undefined) {
      const handler = opts.waypointHandler?.();
      if (handler === undefined) return respond(STATUS.unavailable, `${formatAddr(dst)} is served by waypoint ${waypoint.workload.uid}, but this node runs no L7 proxy`);
      const forwardedFor = parseForwarded(headers.forwarded).for;
      stream.respond({ ':status': STATUS.ok });
      handler(stream, { sourceIdentity, peer, ...(forwardedFor === undefined ? {} : { forwardedFor }), ...(waypoint.service === undefined ? {} : { service: waypoint.service }), ...(waypoint.port === undefined ? {} : { servicePort: waypoint.port }), ...(waypoint.target === undefined ? {} : { target: waypoint.target }), waypoint: waypoint.workload, destinationAddr: dst });
      return undefined;
    }
    if (dst.address !== localIp && snapshot.workloadByIp(localIp)?.local === true) {
      return respond(STATUS.badRequest, `:authority ${formatAddr(dst)} does not match the address the tunnel was opened to (${localIp})`);
    }
    const destination = snapshot.workloadByIp(dst.address);
    if (destination === undefined || !destination.local) return respond(STATUS.badRequest, `destination ${formatAddr(dst)} is not a workload hosted on this node`);
    if (opts.illegalPorts?.has(dst.port) === true) return respond(STATUS.badRequest, `destination port ${dst.port} is one of weft's own ports`);
    // A certificate is only worth as much as the node that holds it: the peer's node must host the identity it presents.
    const peerWorkload = snapshot.workloadByIp(peer.address);
    if (peerWorkload !== undefined && !snapshot.workloads.some((w) => w.identity === sourceIdentity && w.node === peerWorkload.node)) {
      return respond(STATUS.denied, `identity ${sourceIdentity} is not hosted on node ${peerWorkload.node ?? 'unknown'} that ${peer.address} belongs to`);
    }
    const forwarded = parseForwarded(headers.forwarded);
    const tunnel: InboundTunnel = {
      sourceIdentity,
      peer,
      ...(forwarded.for === undefined ? {} : { forwardedFor: forwarded.for }),
      destination,
      destinationAddr: dst,
      baggage: parseBaggage(headers.baggage as string | undefined),
      // A malformed traceparent is dropped rather than propagated (W3C trace-context §3.2: restart the trace).
      ...(typeof headers.traceparent === 'string' && isTraceparent(headers.traceparent) ? { traceparent: headers.traceparent } : {}),
      snapshot,
    };
    const decision = opts.authorize(tunnel);
    if (!decision.allowed) return respond(STATUS.denied, `policy denied: ${decision.reason}`);
    stream.pause();
    const started = Date.now();
    opts.connectUpstream(dst, tunnel).then(
      (upstream) => {
        if (stream.destroyed) {
          upstream.destroy();
          return;
        }
        // Native data path: the addon moves the stream's DATA (armed once the 200 below has gone out).
        const nativeCopy = info?.native !== undefined && stream.readableLength === 0 && upstream.readableLength === 0 && upstream.writableLength === 0 ? info.native.markNative(stream.id as number, upstream, false, stream) : undefined;
        stream.respond({ ':status': STATUS.ok });
        active++;
        if (nativeCopy !== undefined) {
          serveNative(stream, nativeCopy, tunnel, dst, started);
          return;
        }
        // RFC 9113 §8.5: a tunnel torn down abnormally is reset with CONNECT_ERROR (CANCEL would look like an orderly
        // end to Node peers, leaving their side of the copy open). Registered before splice so the reset goes first.
        const reset = (): void => {
          if (!stream.closed) stream.close(H2_ERROR.CONNECT_ERROR);
        };
        upstream.once('error', reset);
        // The client reset its side (RST_STREAM): the local workload's connection is reset too.
        stream.once('close', () => {
          if (stream.rstCode !== H2_ERROR.NO_ERROR && !upstream.destroyed) upstream.resetAndDestroy();
        });
        const pair = splice(stream, upstream);
        const closed = pair.done.then((r) => {
          active--;
          return { bytesReceived: r.aToB, bytesSent: r.bToA, durationMs: Date.now() - started, ...(r.error === undefined ? {} : { error: r.error }) };
        });
        opts.onConnection?.(tunnel, {
          close: (reason) => {
            log.info({ src: sourceIdentity, dst: formatAddr(dst), reason }, 'hbone tunnel closed by weft');
            if (reason !== 'drained') {
              reset();
              pair.abort(new Error(reason));
              return;
            }
            // The drain deadline is an orderly end, as the L4 path's FIN is: END_STREAM to the client, FIN to the
            // workload, late bytes dropped, and a NO_ERROR close shortly after for a client that never ends its side.
            pair.drain();
            setTimeout(() => {
              if (!stream.closed) stream.close(H2_ERROR.NO_ERROR);
              pair.abort(new Error(reason));
            }, DRAIN_CLOSE_GRACE_MS).unref();
          },
          closed,
        });
        stream.resume();
      },
      (err: unknown) => {
        respond(STATUS.unavailable, `upstream ${formatAddr(dst)} unreachable: ${weftErrorOf(err)?.message ?? String(err)}`);
      },
    );
    return undefined;
  };

  /** A tunnel whose bytes the addon moves: JavaScript keeps its telemetry, policy close and the stream's END_STREAM. */
  const serveNative = (stream: http2.ServerHttp2Stream, copy: HandleCopy & { drain: () => void }, tunnel: InboundTunnel, dst: SocketAddr, started: number): void => {
    // No DATA reaches node:http2 on a native stream; a frame that raced the switch is dropped.
    stream.on('data', () => undefined);
    stream.resume();
    let draining = false;
    const streamClosed = new Promise<void>((resolve) => (stream.closed ? resolve() : stream.once('close', () => resolve())));
    const closed = copy.done.then(async (end) => {
      // The workload's socket failed: RST_STREAM(CONNECT_ERROR) as the JavaScript path sends (RFC 9113 §8.5). A drain
      // already sent END_STREAM; its grace timer closes the stream with NO_ERROR.
      if (end.error !== undefined && !NativeTlsSocket.isQuietEnd(end.error.code) && !stream.closed && !draining) stream.close(H2_ERROR.CONNECT_ERROR);
      // The addon is done with the socket once it ended; a drained tunnel is over only when the client ended its side
      // too (or the grace ran out): the connection must not close under a stream the client still writes to.
      if (draining) await streamClosed;
      active--;
      const error = end.error === undefined ? undefined : new Error(`native tunnel ended: errno ${-end.error.code}`);
      return { bytesReceived: end.bToA, bytesSent: end.aToB, durationMs: Date.now() - started, ...(error === undefined ? {} : { error }) };
    });
    opts.onConnection?.(tunnel, {
      close: (reason) => {
        log.info({ src: tunnel.sourceIdentity, dst: formatAddr(dst), reason }, 'hbone tunnel closed by weft');
        if (reason !== 'drained') {
          copy.abort();
          if (!stream.closed) stream.close(H2_ERROR.CONNECT_ERROR);
          return;
        }
        // As on the Node path: END_STREAM to the client and FIN to the workload, then NO_ERROR for a client that never ends.
        draining = true;
        copy.drain();
        setTimeout(() => {
          copy.abort();
          if (!stream.closed) stream.close(H2_ERROR.NO_ERROR);
        }, DRAIN_CLOSE_GRACE_MS).unref();
      },
      closed,
    });
  };

  return {
    async listen(address) {
      const server = net.createServer({ noDelay: true, pauseOnConnect: false }, onSocket);
      await new Promise<void>((resolve, reject) => {
        server.once('error', (err) => reject(new WeftError('WEFT_ERR_LISTEN', `HBONE listener cannot bind ${formatAddr(address)}`, { cause: err })));
        server.listen({ host: address.address, port: address.port }, () => resolve());
      });
      servers.push(server);
      const bound = server.address() as net.AddressInfo;
      log.info({ address: formatAddr({ address: bound.address, port: bound.port }) }, 'hbone listening');
      return { address: bound.address, port: bound.port };
    },
    accept: onSocket,
    goaway() {
      for (const s of sessions) if (!s.closed && !s.destroyed) s.goaway(H2_ERROR.NO_ERROR);
    },
    async close() {
      const closing = servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve())));
      // Sessions close in order first (GOAWAY, then close_notify and FIN once their streams are done), so a client is
      // told the connection ended rather than finding it gone under a write; what is left after the grace is cut.
      const ending = [...sessions]
        .filter((s) => !s.destroyed)
        .map(
          (s) =>
            new Promise<void>((resolve) => {
              s.once('close', () => resolve());
              s.close();
            }),
        );
      if (ending.length > 0) {
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([Promise.all(ending), new Promise((resolve) => (timer = setTimeout(resolve, DRAIN_CLOSE_GRACE_MS)))]);
        clearTimeout(timer);
      }
      for (const s of sessions) s.destroy();
      for (const s of sockets) s.destroy();
      await Promise.all(closing);
    },
    get activeTunnels() {
      return active;
    },
  };
}
