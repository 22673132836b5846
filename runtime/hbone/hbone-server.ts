/** The HBONE inbound listener (15008): mTLS with mandatory client certificates, then HTTP/2 CONNECT per tunnel, validated and authorized before a byte reaches the local workload. */
import type http2 from 'node:http2';
import net from 'node:net';
import type tls from 'node:tls';
// node:crypto is loaded on first use, not at start-up: an idle node holds none of it (test/bench/README.md, idle memory).
import { HBONE_DEFAULTS } from '../config/defaults.js';
import { WeftError, weftErrorOf } from '../errors.js';
import { createLogger, type Logger } from '../log.js';
import type { CertificateManager } from '../identity/certificate-manager.js';
import type { ProxyState } from '../state/proxy-state.js';
import type { Service, StateSnapshot, Workload } from '../state/state-snapshot.js';
import type { HboneConfig, ServicePortConfig } from '../config/config-schema.js';
import type { Duplex } from 'node:stream';
import { formatAddr, normalizeIp, type SocketAddr } from '../l4/original-destination.js';
import { HBONE_ALPN, hasTrustDomain, isExpired, peerCertificate, peerIdentity, tlsOptionsFor } from './hbone-tls.js';
import type { WorkloadCertificate } from '../identity/workload-certificate.js';
import { isTraceparent, parseAuthority, parseBaggage, parseForwarded } from './hbone-headers.js';
import { splice } from './stream-splice.js';
import { h2Settings } from './h2-settings.js';

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

const SOURCE_IDENTITY = Symbol('weft.hbone.sourceIdentity');
type TaggedSocket = tls.TLSSocket & { [SOURCE_IDENTITY]?: string };

/** RFC 9113 §7 error codes (node:http2's constants, without loading it). */
const H2_ERROR = { NO_ERROR: 0x0, CONNECT_ERROR: 0xa } as const;
const STATUS = { ok: 200, badRequest: 400, denied: 401, unavailable: 503 } as const;
/** After the drain deadline's END_STREAM, how long a tunnel's client gets to end its side before the stream is closed. */
const DRAIN_CLOSE_GRACE_MS = 300;

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
  const sockets = new Set<net.Socket>();
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
    server.on('tlsClientError', (err: Error & { code?: string }, socket) => {
      reject({ address: normalizeIp(socket.remoteAddress), port: socket.remotePort ?? 0 }, 'tls', `TLS handshake failed: ${err.code ?? err.message}`, { localIdentity: cert.identity });
    });
    tlsServers.set(cert.identity, { server, cert });
    return server;
  };

  const onSecure = (socket: tls.TLSSocket, localIdentity: string): void => {
    const peer = { address: normalizeIp(socket.remoteAddress), port: socket.remotePort ?? 0 };
    socket.on('error', () => socket.destroy());
    const refuse = (reason: string, sourceIdentity?: string): void => {
      reject(peer, 'tls', reason, { localIdentity, ...(sourceIdentity === undefined ? {} : { sourceIdentity }) });
      socket.destroy();
    };
    const peerCert = peerCertificate(socket);
    if (peerCert === undefined) return refuse('client presented no certificate (HBONE requires mutual TLS)');
    const identity = peerIdentity(socket);
    if (!socket.authorized) return refuse(`client certificate rejected: ${String(socket.authorizationError)}`, identity);
    // A resumed session keeps the chain's verification result from the full handshake; the leaf may have expired since.
    if (socket.isSessionReused() && isExpired(peerCert)) return refuse(`client certificate of resumed session expired at ${peerCert.validTo}`, identity);
    if (identity === undefined) return refuse('client certificate carries no SPIFFE identity');
    const trustDomain = opts.state.current.config.trustDomain;
    if (!hasTrustDomain(peerCert, trustDomain)) return refuse(`client identity ${identity} is outside trust domain ${trustDomain}`, identity);
    if (socket.alpnProtocol !== 'h2') return refuse(`client did not negotiate ALPN h2 (got ${String(socket.alpnProtocol)})`, identity);
    (socket as TaggedSocket)[SOURCE_IDENTITY] = identity;
    h2().emit('connection', socket);
    return undefined;
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
      tlsServerFor(held).emit('connection', raw);
      return;
    }
    raw.pause();
    opts.certificates.fetch(serving.identity).then(
      (cert) => {
        if (!raw.destroyed) tlsServerFor(cert).emit('connection', raw);
      },
      (err: unknown) => {
        reject(peer, 'tls', `no certificate for local identity ${serving.identity}: ${weftErrorOf(err)?.message ?? String(err)}`);
        raw.destroy();
      },
    );
  };

  const onSession = (session: http2.ServerHttp2Session): void => {
    sessions.add(session);
    session.once('close', () => sessions.delete(session));
    session.on('error', () => session.destroy());
    session.once('connect', () => session.setLocalWindowSize(settings.connectionWindowBytes));
  };

  const onStream = (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): void => {
    // session.socket is a proxy over the TLSSocket; the tag set at handshake reads through it.
    const socket = stream.session?.socket as TaggedSocket | undefined;
    const sourceIdentity = socket?.[SOURCE_IDENTITY];
    const peer = { address: normalizeIp(socket?.remoteAddress), port: socket?.remotePort ?? 0 };
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
    const localIp = normalizeIp(socket?.localAddress);
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
        stream.respond({ ':status': STATUS.ok });
        active++;
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
            // workload, and a NO_ERROR close shortly after for a client that never ends its side.
            upstream.end();
            if (!stream.closed) stream.end();
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
      for (const s of sessions) s.destroy();
      for (const s of sockets) s.destroy();
      await Promise.all(closing);
    },
    get activeTunnels() {
      return active;
    },
  };
}
