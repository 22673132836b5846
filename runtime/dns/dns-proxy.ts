/** The DNS proxy (ztunnel's 15053): A/AAAA for the mesh's names from the current state snapshot, everything else forwarded upstream; UDP with truncation and TCP (RFC 1035 §4.2, RFC 7766). */
import dgram from 'node:dgram';
import fs from 'node:fs';
import net from 'node:net';
import dnsPacket from 'dns-packet';
import type { Question, DecodedPacket, Answer, OptAnswer } from 'dns-packet';
import { WeftError, weftErrorOf } from '../errors.js';
import type { Logger } from '../log.js';
import type { ProxyState } from '../state/proxy-state.js';
import type { MetricsRegistry } from '../telemetry/metrics-registry.js';
import { normalizeIp, type SocketAddr } from '../l4/original-destination.js';
import { parseSocketAddress } from '../config/socket-address.js';
import { DnsRecords, SRV_PRIORITY, SRV_WEIGHT, type DnsHost } from './dns-records.js';
import { DnsForwarder } from './dns-forwarder.js';
import { DnsCache } from './dns-cache.js';
import { upstreamResolvers } from './resolv-conf.js';
import { handleFd, socketHandover } from '../upgrade/socket-handover.js';

/** RFC 1035 §2.3.4: a UDP message without EDNS carries at most 512 bytes. */
const UDP_LIMIT = 512;
/** What weft offers and accepts as EDNS payload size (the DNS flag day 2020 value: no IP fragmentation). */
const EDNS_PAYLOAD = 1232;
/** RFC 7766 §6.2.3: servers close idle TCP connections after a few seconds. */
const TCP_IDLE_MS = 10_000;
/** Header flag bits (RFC 1035 §4.1.1) and RCODEs. */
const FLAG_TC = 0x0200;
const FLAG_RD = 0x0100;
const FLAG_RA = 0x0080;
const FLAG_AA = 0x0400;
const RCODE = { FORMERR: 1, SERVFAIL: 2, NOTIMP: 4 } as const;

export type DnsResult = 'answered' | 'forwarded' | 'failed';

/** DNS served on sockets handed to DnsProxy.attach (one pod's 15053). */
export interface DnsAttachment {
  close(): void;
}
type Protocol = 'udp' | 'tcp';

export interface DnsProxyOptions {
  state: ProxyState;
  metrics: MetricsRegistry;
  logger: Logger;
  /** SO_REUSEPORT on both sockets: each worker thread binds its own pair and the kernel spreads queries between them. */
  reusePort?: boolean;
}

export class DnsProxy {
  readonly #opts: DnsProxyOptions;
  readonly #forwarder: DnsForwarder;
  readonly #cache: DnsCache;
  readonly #queries;
  readonly #upstreamSeconds;
  /** One socket of each kind, or several adopted from a predecessor that ran more worker threads (all are served). */
  #udps: dgram.Socket[] = [];
  #tcps: net.Server[] = [];
  readonly #connections = new Set<net.Socket>();
  readonly #released: (() => void)[] = [];
  #port: number | undefined;
  #servers: { version: number; list: SocketAddr[] } | undefined;

  constructor(opts: DnsProxyOptions) {
    this.#opts = opts;
    const dns = () => opts.state.current.config.dns;
    this.#forwarder = new DnsForwarder({ servers: () => this.#upstreams(), timeoutMs: () => dns().timeoutMs, attempts: () => dns().attempts });
    this.#cache = new DnsCache({ maxEntries: () => dns().cacheEntries });
    this.#queries = opts.metrics.counter('weft_dns_queries_total', 'DNS queries by how they were answered (answered from state, forwarded upstream, cached from an earlier forward, failed)', ['protocol', 'result']);
    this.#upstreamSeconds = opts.metrics.histogram('weft_dns_upstream_request_duration_seconds', 'Time upstream resolvers took to answer forwarded queries', ['protocol'], [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5]);
  }

  get port(): number | undefined {
    return this.#port;
  }

  /**
   * Binds UDP and TCP on `address`; with port 0 both get the same kernel-chosen port. Sockets a predecessor handed
   * over (hot upgrade) are adopted instead, and start serving at the handover's commit.
   */
  async start(address: string): Promise<void> {
    const addr = parseSocketAddress(address);
    if (addr === undefined) throw new WeftError('WEFT_ERR_LISTEN', `dns listener: "${address}" is not an ip:port address`);
    const family = net.isIPv6(addr.host) ? 'udp6' : 'udp4';
    const key = `dns ${address}`;
    const udpInherited = socketHandover.take(key, 'udp');
    const tcpInherited = socketHandover.take(key, 'tcp');
    const tcpServer = (): net.Server => {
      const tcp = net.createServer({ noDelay: true }, (s) => this.#serveTcp(s));
      this.#tcps.push(tcp);
      return tcp;
    };
    if (udpInherited.length > 0 && tcpInherited.length > 0) {
      // Every inherited socket gets a reader: a predecessor with more workers had one pair per worker in the group.
      const udps = udpInherited.map(() => this.#udpSocket(family));
      const tcps = tcpInherited.map(tcpServer);
      this.#port = udpInherited[0]?.port;
      await socketHandover.defer(async () => {
        for (const [i, s] of udpInherited.entries()) await bindUdp(udps[i] as dgram.Socket, { fd: s.fd });
        for (const [i, s] of tcpInherited.entries()) await listenTcp(tcps[i] as net.Server, { fd: s.fd });
      });
    } else {
      const tcp = tcpServer();
      for (let attempt = 0; ; attempt++) {
        const udp = this.#udpSocket(family);
        try {
          await bindUdp(udp, { address: addr.host, port: addr.port });
          this.#port = udp.address().port;
          await listenTcp(tcp, { host: addr.host, port: this.#port, reusePort: this.#opts.reusePort === true });
          break;
        } catch (err) {
          udp.close();
          this.#udps = this.#udps.filter((u) => u !== udp);
          // Port 0: the UDP port's TCP twin may be taken; pick another pair.
          if (addr.port === 0 && attempt < 5) continue;
          throw new WeftError('WEFT_ERR_LISTEN', `dns listener: cannot listen on ${address}: ${(err as Error).message} (is another process using the port?)`, { cause: err });
        }
      }
    }
    const port = this.#port ?? 0;
    for (const udp of this.#udps) this.#released.push(socketHandover.hold({ key, kind: 'udp', port }, () => (this.#udps.includes(udp) ? handleFd(udpHandle(udp)) : undefined)));
    for (const tcp of this.#tcps) this.#released.push(socketHandover.hold({ key, kind: 'tcp', port }, () => (tcp.listening ? handleFd((tcp as unknown as { _handle?: unknown })._handle) : undefined)));
    this.#opts.logger.info({ address: `${addr.host}:${this.#port}`, inherited: udpInherited.length > 0 }, 'dns proxy listening (udp, tcp)');
  }

  #udpSocket(family: 'udp4' | 'udp6'): dgram.Socket {
    const udp = this.#answeringUdp(family, undefined, () => this.#udps.includes(udp));
    this.#udps.push(udp);
    return udp;
  }

  /** A UDP socket that answers each query while `open()` holds (a reply after close would throw). */
  #answeringUdp(family: 'udp4' | 'udp6', namespace: string | undefined, open: () => boolean): dgram.Socket {
    const udp = dgram.createSocket({ type: family, reusePort: this.#opts.reusePort === true });
    udp.on('message', (msg, rinfo) => {
      void this.answer(msg, { address: normalizeIp(rinfo.address), port: rinfo.port }, 'udp', namespace).then((reply) => {
        if (reply !== undefined && open()) udp.send(reply, rinfo.port, rinfo.address);
      });
    });
    udp.on('error', (err) => this.#opts.logger.warn({ err }, 'dns udp socket error'));
    return udp;
  }

  /**
   * Serves DNS on a UDP socket and a TCP listener made elsewhere (in-pod capture: bound inside a pod's namespace, whose
   * rules send the pod's port 53 there), answering a single label in `namespace` (the pod's, from the node agent).
   * Resolves once both serve; the attachment's close() stops them and ends its TCP connections. Takes both fds: they are
   * closed when attaching fails.
   */
  async attach(fds: { udp: number; tcp: number }, family: 4 | 6, namespace: string | undefined): Promise<DnsAttachment> {
    let closed = false;
    const udp = this.#answeringUdp(family === 6 ? 'udp6' : 'udp4', namespace, () => !closed);
    const connections = new Set<net.Socket>();
    const tcp = net.createServer({ noDelay: true }, (s) => {
      connections.add(s);
      s.once('close', () => connections.delete(s));
      this.#serveTcp(s, namespace);
    });
    try {
      await bindUdp(udp, { fd: fds.udp });
    } catch (err) {
      // dgram refuses an fd before adopting it, so both fds are still ours to close.
      closed = true;
      udp.close();
      for (const fd of [fds.udp, fds.tcp]) closeQuietly(fd);
      throw err;
    }
    try {
      await listenTcp(tcp, { fd: fds.tcp });
    } catch (err) {
      // net adopts a TCP socket's fd before listen() and closes it when listen() fails; the UDP fd is the socket's now.
      closed = true;
      udp.close();
      throw err;
    }
    return {
      close: () => {
        if (closed) return;
        closed = true;
        udp.close();
        tcp.close();
        for (const s of connections) s.destroy();
      },
    };
  }

  /**
   * Stops accepting TCP connections (a drain's first step). The UDP socket keeps answering until close(): after a
   * handover it is the same socket the successor reads, so answering from either process is right, and replies to
   * queries still being forwarded are not lost.
   */
  stopAccepting(): void {
    for (const r of this.#released.splice(0)) r();
    for (const tcp of this.#tcps) if (tcp.listening) tcp.close();
  }

  close(): void {
    this.stopAccepting();
    for (const udp of this.#udps.splice(0)) udp.close();
    for (const s of this.#connections) s.destroy();
    this.#forwarder.close();
  }

  /**
   * The reply to one message from `client`, or undefined to drop it (no usable header, or a response sent to us).
   * A single label is looked up in `namespace` when given (an in-pod listener knows its pod), else in the namespace of
   * the workload with the client's address.
   * Over UDP a reply larger than the client's limit (512, or its EDNS size) is cut to the header and question with TC
   * set, so the client asks again over TCP (RFC 1035 §4.2.1, RFC 6891 §6.2.5).
   */
  async answer(message: Buffer, client: SocketAddr, protocol: Protocol, namespace?: string): Promise<Buffer | undefined> {
    let query: DecodedPacket;
    try {
      query = dnsPacket.decode(message);
    } catch {
      this.#queries.inc({ protocol, result: 'failed' });
      // With a readable header, FORMERR tells the client at once (RFC 1035 §4.1.1); without one there is nothing to answer.
      return message.length >= 12 && (message.readUInt16BE(2) & 0x8000) === 0 ? errorReply(message.readUInt16BE(0), undefined, RCODE.FORMERR, message.readUInt16BE(2)) : undefined;
    }
    if (query.type === 'response') return undefined;
    const question = query.questions?.[0];
    const opcode = (query.flags ?? 0) & 0x7800;
    if (opcode !== 0 || question === undefined || (query.questions?.length ?? 0) !== 1) {
      this.#queries.inc({ protocol, result: 'failed' });
      return errorReply(query.id ?? 0, question, opcode !== 0 ? RCODE.NOTIMP : RCODE.FORMERR, query.flags ?? 0);
    }
    const opt = query.additionals?.find((a): a is OptAnswer => a.type === 'OPT');
    const limit = protocol === 'tcp' ? 65_535 : Math.max(UDP_LIMIT, Math.min(opt?.udpPayloadSize ?? UDP_LIMIT, EDNS_PAYLOAD * 4));
    const snapshot = this.#opts.state.current;
    const inClass = question.class === 'IN' || question.class === undefined;
    const records = DnsRecords.of(snapshot);
    // In-pod listeners know the pod's namespace from the node agent; node listeners find it by the client's address.
    const clientNamespace = inClass ? (namespace ?? snapshot.workloadByIp(client.address)?.namespace) : undefined;
    const service = inClass && question.type === 'SRV' ? records.service(question.name, clientNamespace) : undefined;
    const hostEntry = inClass && service === undefined ? records.lookup(question.name, clientNamespace) : undefined;
    if (service !== undefined || hostEntry !== undefined) {
      this.#queries.inc({ protocol, result: 'answered' });
      const ttl = snapshot.config.dns.ttlSeconds;
      const addressAnswers = (name: string, type: 'A' | 'AAAA', list: string[]): Answer[] => list.map((data) => ({ type, class: 'IN', name, ttl, data }));
      let answers: Answer[];
      let additionals: Answer[] = [];
      if (service !== undefined) {
        // RFC 2782; the target's addresses ride along in the additional section, as kube-dns and CoreDNS send them.
        answers = [{ type: 'SRV', class: 'IN', name: question.name, ttl, data: { priority: SRV_PRIORITY, weight: SRV_WEIGHT, port: service.port, target: service.host.fqdn } }];
        additionals = [...addressAnswers(service.host.fqdn, 'A', service.host.v4), ...addressAnswers(service.host.fqdn, 'AAAA', service.host.v6)];
      } else {
        const found = hostEntry as DnsHost;
        answers = question.type === 'A' ? addressAnswers(question.name, 'A', found.v4) : question.type === 'AAAA' ? addressAnswers(question.name, 'AAAA', found.v6) : [];
      }
      const response = {
        type: 'response' as const,
        id: query.id ?? 0,
        flags: FLAG_AA | FLAG_RA | ((query.flags ?? 0) & FLAG_RD),
        questions: [question],
        answers,
        additionals: [...additionals, ...(opt === undefined ? [] : [{ type: 'OPT' as const, name: '.', udpPayloadSize: EDNS_PAYLOAD, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] } as unknown as Answer])],
      };
      const encoded = dnsPacket.encode(response);
      return encoded.length <= limit ? encoded : dnsPacket.encode({ ...response, flags: response.flags | FLAG_TC, answers: [], additionals: [] });
    }
    this.#upstreams(); // a reload that changed the resolvers empties the cache first
    const cacheKey = DnsCache.key(question, query);
    const cached = this.#cache.get(cacheKey, query, message);
    if (cached !== undefined) {
      this.#queries.inc({ protocol, result: 'cached' });
      return cached.length <= limit ? cached : truncated(cached);
    }
    const started = performance.now();
    try {
      const reply = await this.#forwarder.forward(message, protocol === 'tcp');
      this.#upstreamSeconds.observe({ protocol }, (performance.now() - started) / 1000);
      this.#queries.inc({ protocol, result: 'forwarded' });
      this.#cache.set(cacheKey, reply);
      return reply.length <= limit ? reply : truncated(reply);
    } catch (err) {
      this.#queries.inc({ protocol, result: 'failed' });
      this.#opts.logger.warn({ name: question.name, type: question.type, code: weftErrorOf(err)?.code, error: (err as Error).message }, 'dns query failed upstream; answering SERVFAIL');
      return errorReply(query.id ?? 0, question, RCODE.SERVFAIL, query.flags ?? 0);
    }
  }

  #upstreams(): SocketAddr[] {
    const snapshot = this.#opts.state.current;
    // resolv.conf is read once per config version: a reload (or a new Kubernetes snapshot) re-reads it.
    if (this.#servers?.version !== snapshot.version) {
      const list = upstreamResolvers(snapshot.config.dns);
      // Other resolvers may answer otherwise: what the old ones said is not kept.
      if (this.#servers !== undefined && JSON.stringify(list) !== JSON.stringify(this.#servers.list)) this.#cache.clear();
      this.#servers = { version: snapshot.version, list };
    }
    return this.#servers.list;
  }

  /** RFC 7766 §6.2.1: several queries per connection, each answered as soon as it is ready (IDs tell them apart). */
  #serveTcp(socket: net.Socket, namespace?: string): void {
    this.#connections.add(socket);
    socket.once('close', () => this.#connections.delete(socket));
    socket.on('error', () => socket.destroy());
    socket.setTimeout(TCP_IDLE_MS, () => socket.end());
    const client = { address: normalizeIp(socket.remoteAddress), port: socket.remotePort ?? 0 };
    let buffered: Buffer = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
      while (buffered.length >= 2 && buffered.length >= 2 + buffered.readUInt16BE(0)) {
        const message = buffered.subarray(2, 2 + buffered.readUInt16BE(0));
        buffered = buffered.subarray(2 + message.length);
        void this.answer(message, client, 'tcp', namespace).then((reply) => {
          if (reply === undefined) {
            // Nothing to answer on a stream means the stream cannot be trusted to be framed right either.
            socket.destroy();
            return;
          }
          if (socket.destroyed) return;
          const frame = Buffer.alloc(2 + reply.length);
          frame.writeUInt16BE(reply.length, 0);
          reply.copy(frame, 2);
          socket.write(frame);
        });
      }
    });
  }
}

function errorReply(id: number, question: Question | undefined, rcode: number, queryFlags: number): Buffer {
  return dnsPacket.encode({ type: 'response', id, flags: FLAG_RA | (queryFlags & (FLAG_RD | 0x7800)) | rcode, questions: question === undefined ? [] : [question] });
}

/** Header and question of an upstream reply with TC set (the client retries over TCP). */
function truncated(reply: Buffer): Buffer {
  try {
    const decoded = dnsPacket.decode(reply);
    return dnsPacket.encode({ type: 'response', id: decoded.id ?? 0, flags: (decoded.flags ?? 0) | FLAG_TC, questions: decoded.questions ?? [] });
  } catch {
    const header = Buffer.from(reply.subarray(0, 12));
    header.writeUInt16BE(header.readUInt16BE(2) | FLAG_TC, 2);
    header.fill(0, 4);
    return header;
  }
}

function bindUdp(socket: dgram.Socket, target: { address: string; port: number } | { fd: number }): Promise<void> {
  return new Promise((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(target, () => {
      socket.off('error', reject);
      resolve();
    });
  });
}

function closeQuietly(fd: number): void {
  try {
    fs.closeSync(fd);
  } catch {
    // Already closed: nothing is left to release.
  }
}

function listenTcp(server: net.Server, target: net.ListenOptions | { fd: number }): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ ...target, backlog: 1024 } as net.ListenOptions, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/** The libuv handle of a dgram socket (Node keeps it in a symbol-keyed state object). */
function udpHandle(socket: dgram.Socket): unknown {
  for (const sym of Object.getOwnPropertySymbols(socket)) {
    const state = (socket as unknown as Record<symbol, { handle?: unknown } | undefined>)[sym];
    if (state?.handle !== undefined) return state.handle;
  }
  return undefined;
}
