/** Forwards a query weft does not answer to the upstream resolvers: UDP first, TCP when the client asked over TCP or the upstream truncated, with per-attempt timeouts and retries across servers. */
import dgram from 'node:dgram';
import net from 'node:net';
import { randomInt } from 'node:crypto';
import { isIPv6 } from 'node:net';
import { WeftError } from '../errors.js';
import { formatAddr, type SocketAddr } from '../l4/original-destination.js';

/** RFC 1035 §4.1.1: the TC bit of the header's second 16-bit word. */
const TC = 0x0200;

export interface ForwarderOptions {
  servers: () => readonly SocketAddr[];
  timeoutMs: () => number;
  attempts: () => number;
}

interface Pending {
  server: SocketAddr;
  resolve: (reply: Buffer) => void;
}

export class DnsForwarder {
  readonly #opts: ForwarderOptions;
  readonly #sockets = new Map<'udp4' | 'udp6', dgram.Socket>();
  readonly #pending = new Map<number, Pending>();
  #closed = false;

  constructor(opts: ForwarderOptions) {
    this.#opts = opts;
  }

  /**
   * The upstream's reply to `query`, its ID rewritten to the client's. Attempt i goes to server i mod n; a reply with
   * TC set is asked again over TCP when `tcp` (the client can take a large answer), else passed on so the client
   * retries over TCP itself (RFC 7766 §5). Throws WEFT_ERR_UPSTREAM_TIMEOUT / _CONNECT when every attempt failed.
   */
  async forward(query: Buffer, tcp: boolean): Promise<Buffer> {
    const servers = this.#opts.servers();
    if (servers.length === 0) throw new WeftError('WEFT_ERR_UPSTREAM_CONNECT', 'no upstream DNS resolver: set dns.upstreams or a nameserver in resolv.conf');
    const clientId = query.readUInt16BE(0);
    const attempts = this.#opts.attempts();
    let lastError: unknown;
    for (let i = 0; i < attempts; i++) {
      const server = servers[i % servers.length] as SocketAddr;
      try {
        let reply = tcp ? await this.#tcp(query, server) : await this.#udp(query, server);
        if (!tcp && (reply.readUInt16BE(2) & TC) !== 0) return withId(reply, clientId);
        if (tcp && (reply.readUInt16BE(2) & TC) !== 0) reply = await this.#tcp(query, server);
        return withId(reply, clientId);
      } catch (err) {
        lastError = err;
      }
    }
    throw lastError instanceof WeftError ? lastError : new WeftError('WEFT_ERR_UPSTREAM_CONNECT', `DNS upstreams ${servers.map(formatAddr).join(', ')} failed`, { cause: lastError });
  }

  close(): void {
    this.#closed = true;
    for (const s of this.#sockets.values()) s.close();
    this.#sockets.clear();
  }

  #socket(family: 'udp4' | 'udp6'): dgram.Socket {
    let socket = this.#sockets.get(family);
    if (socket === undefined) {
      socket = dgram.createSocket(family);
      socket.on('message', (msg, rinfo) => {
        if (msg.length < 12) return;
        const p = this.#pending.get(msg.readUInt16BE(0));
        // Only the server asked may answer (RFC 5452 §4.1: match ID and source address against spoofed replies).
        if (p === undefined || p.server.address !== rinfo.address || p.server.port !== rinfo.port) return;
        p.resolve(msg);
      });
      // A send to an unreachable resolver surfaces here (ICMP); the attempt's own timeout decides.
      socket.on('error', () => undefined);
      socket.unref();
      this.#sockets.set(family, socket);
    }
    return socket;
  }

  #udp(query: Buffer, server: SocketAddr): Promise<Buffer> {
    if (this.#closed) return Promise.reject(new WeftError('WEFT_ERR_UPSTREAM_CONNECT', 'DNS forwarder is closed'));
    const socket = this.#socket(isIPv6(server.address) ? 'udp6' : 'udp4');
    let id = randomInt(0x10000);
    while (this.#pending.has(id)) id = randomInt(0x10000);
    const timeoutMs = this.#opts.timeoutMs();
    return new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new WeftError('WEFT_ERR_UPSTREAM_TIMEOUT', `DNS upstream ${formatAddr(server)} did not answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(id, {
        server,
        resolve: (reply) => {
          clearTimeout(timer);
          this.#pending.delete(id);
          resolve(reply);
        },
      });
      socket.send(withId(query, id), server.port, server.address);
    });
  }

  /** RFC 1035 §4.2.2: a two-byte length, then the message; one query per connection here. */
  #tcp(query: Buffer, server: SocketAddr): Promise<Buffer> {
    const timeoutMs = this.#opts.timeoutMs();
    return new Promise<Buffer>((resolve, reject) => {
      const socket = net.connect({ host: server.address, port: server.port });
      let buffered = Buffer.alloc(0);
      const fail = (err: Error): void => {
        socket.destroy();
        reject(err);
      };
      socket.setTimeout(timeoutMs, () => fail(new WeftError('WEFT_ERR_UPSTREAM_TIMEOUT', `DNS upstream ${formatAddr(server)} (TCP) did not answer within ${timeoutMs} ms`)));
      socket.once('error', (err) => fail(new WeftError('WEFT_ERR_UPSTREAM_CONNECT', `DNS upstream ${formatAddr(server)} (TCP): ${err.message}`, { cause: err })));
      socket.once('close', () => fail(new WeftError('WEFT_ERR_UPSTREAM_CONNECT', `DNS upstream ${formatAddr(server)} (TCP) closed before answering`)));
      socket.on('data', (chunk: Buffer) => {
        buffered = Buffer.concat([buffered, chunk]);
        if (buffered.length < 2 || buffered.length < 2 + buffered.readUInt16BE(0)) return;
        const reply = buffered.subarray(2, 2 + buffered.readUInt16BE(0));
        socket.removeAllListeners('close');
        socket.destroy();
        if (reply.length < 12) reject(new WeftError('WEFT_ERR_UPSTREAM_CONNECT', `DNS upstream ${formatAddr(server)} (TCP) sent a short message`));
        else resolve(reply);
      });
      const frame = Buffer.alloc(2 + query.length);
      frame.writeUInt16BE(query.length, 0);
      query.copy(frame, 2);
      socket.write(frame);
    });
  }
}

function withId(message: Buffer, id: number): Buffer {
  const copy = Buffer.from(message);
  copy.writeUInt16BE(id, 0);
  return copy;
}
