// DNS over real sockets for tests and benchmarks: one query over UDP or TCP, and a tiny upstream resolver that answers from a table.
import dgram from 'node:dgram';
import net from 'node:net';
import dnsPacket from 'dns-packet';
import type { DecodedPacket, Packet } from 'dns-packet';

export interface QueryOptions {
  type?: 'A' | 'AAAA' | 'TXT' | 'MX' | 'SRV';
  /** Source address to send from (another loopback address is another client pod). */
  from?: string;
  /** Adds an EDNS OPT record with this UDP payload size. */
  ednsSize?: number;
  timeoutMs?: number;
  id?: number;
}

export function encodeQuery(name: string, opts: QueryOptions = {}): Buffer {
  const packet: Packet = {
    type: 'query',
    id: opts.id ?? Math.floor(Math.random() * 65536),
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ type: opts.type ?? 'A', class: 'IN', name }],
    additionals: opts.ednsSize === undefined ? [] : [{ type: 'OPT', name: '.', udpPayloadSize: opts.ednsSize, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] } as never],
  };
  return dnsPacket.encode(packet);
}

/** Sends raw bytes over UDP and resolves with the raw reply, or undefined when none came within the timeout. */
export function udpExchange(port: number, message: Buffer, opts: { from?: string; timeoutMs?: number; host?: string } = {}): Promise<Buffer | undefined> {
  const socket = dgram.createSocket('udp4');
  return new Promise<Buffer | undefined>((resolve, reject) => {
    const timer = setTimeout(() => resolve(undefined), opts.timeoutMs ?? 3_000);
    socket.once('message', (msg) => {
      clearTimeout(timer);
      resolve(msg);
    });
    socket.once('error', reject);
    socket.bind(0, opts.from ?? '127.0.0.1', () => socket.send(message, port, opts.host ?? '127.0.0.1'));
  }).finally(() => socket.close());
}

export async function udpQuery(port: number, name: string, opts: QueryOptions = {}): Promise<DecodedPacket> {
  const reply = await udpExchange(port, encodeQuery(name, opts), opts);
  if (reply === undefined) throw new Error(`no UDP reply for ${name}`);
  return dnsPacket.decode(reply);
}

/** One or more length-prefixed messages over one TCP connection (RFC 1035 §4.2.2); resolves with the replies in arrival order. */
export function tcpExchange(port: number, messages: Buffer[], opts: { timeoutMs?: number; host?: string } = {}): Promise<Buffer[]> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: opts.host ?? '127.0.0.1' });
    const replies: Buffer[] = [];
    let buffered = Buffer.alloc(0);
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`TCP DNS: ${replies.length} of ${messages.length} replies within the timeout`));
    }, opts.timeoutMs ?? 5_000);
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      while (buffered.length >= 2 && buffered.length >= 2 + buffered.readUInt16BE(0)) {
        replies.push(buffered.subarray(2, 2 + buffered.readUInt16BE(0)));
        buffered = buffered.subarray(2 + buffered.readUInt16BE(0));
      }
      if (replies.length === messages.length) {
        clearTimeout(timer);
        socket.end();
        resolve(replies);
      }
    });
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    for (const m of messages) {
      const frame = Buffer.alloc(2 + m.length);
      frame.writeUInt16BE(m.length, 0);
      m.copy(frame, 2);
      socket.write(frame);
    }
  });
}

export async function tcpQuery(port: number, name: string, opts: QueryOptions = {}): Promise<DecodedPacket> {
  const [reply] = await tcpExchange(port, [encodeQuery(name, opts)], opts);
  return dnsPacket.decode(reply as Buffer);
}

export function addressesOf(reply: DecodedPacket): string[] {
  return (reply.answers ?? []).flatMap((a) => (a.type === 'A' || a.type === 'AAAA' ? [a.data] : []));
}

export function rcodeOf(reply: DecodedPacket): string {
  return (reply as unknown as { rcode: string }).rcode;
}

export interface TestResolver {
  port: number;
  /** Queries received, as `name type protocol`. */
  seen: string[];
  close(): Promise<void>;
}

/**
 * An upstream resolver on 127.0.0.1 (UDP and TCP on one port) answering A records from `table`; names not in it get
 * NXDOMAIN. `silent` never answers (a resolver that times out).
 */
export async function startTestResolver(table: Record<string, string[]>, opts: { silent?: boolean } = {}): Promise<TestResolver> {
  const seen: string[] = [];
  const reply = (query: Buffer, protocol: string): Buffer | undefined => {
    const q = dnsPacket.decode(query);
    const question = q.questions?.[0];
    if (question === undefined) return undefined;
    seen.push(`${question.name} ${question.type} ${protocol}`);
    if (opts.silent === true) return undefined;
    const addrs = table[question.name.toLowerCase()];
    return dnsPacket.encode({
      type: 'response',
      id: q.id ?? 0,
      flags: dnsPacket.RECURSION_AVAILABLE | dnsPacket.RECURSION_DESIRED | (addrs === undefined ? 3 : 0),
      questions: [question],
      answers: question.type === 'A' ? (addrs ?? []).map((data) => ({ type: 'A' as const, class: 'IN' as const, name: question.name, ttl: 60, data })) : [],
    });
  };
  // UDP and TCP on one port: the UDP port's TCP twin may be taken by another test, so pick another pair then.
  let udp = dgram.createSocket('udp4');
  let port = 0;
  const tcp = net.createServer((socket) => serveTcp(socket));
  for (let attempt = 0; ; attempt++) {
    await new Promise<void>((resolve) => udp.bind(0, '127.0.0.1', resolve));
    port = udp.address().port;
    try {
      await new Promise<void>((resolve, reject) => {
        tcp.once('error', reject);
        tcp.listen(port, '127.0.0.1', () => {
          tcp.off('error', reject);
          resolve();
        });
      });
      break;
    } catch (err) {
      udp.close();
      if (attempt >= 5) throw err;
      udp = dgram.createSocket('udp4');
    }
  }
  udp.on('message', (msg, rinfo) => {
    const r = reply(msg, 'udp');
    if (r !== undefined) udp.send(r, rinfo.port, rinfo.address);
  });
  function serveTcp(socket: net.Socket): void {
    let buffered = Buffer.alloc(0);
    socket.on('error', () => socket.destroy());
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      while (buffered.length >= 2 && buffered.length >= 2 + buffered.readUInt16BE(0)) {
        const r = reply(buffered.subarray(2, 2 + buffered.readUInt16BE(0)), 'tcp');
        buffered = buffered.subarray(2 + buffered.readUInt16BE(0));
        if (r === undefined) continue;
        const frame = Buffer.alloc(2 + r.length);
        frame.writeUInt16BE(r.length, 0);
        r.copy(frame, 2);
        socket.write(frame);
      }
    });
  }
  return {
    port,
    seen,
    close: async () => {
      udp.close();
      await new Promise<void>((resolve) => {
        tcp.close(() => resolve());
        tcp.getConnections(() => undefined);
      });
    },
  };
}
