// A stand-in for the weft runtime in namespace tests (run inside the runtime netns): transparent listeners on 15001/15006/15008 via the
// native addon, each accepted connection forwarded to its original destination (or a service VIP's backend) and logged as one JSON line on
// stderr, as weft's access log is. Usage: node --import tsx netns-tproxy-forwarder.ts '<json config>'
import net from 'node:net';
import { loadNativeSocket } from '../../runtime/native/weft-socket.js';

interface ForwarderConfig {
  /** "vip:port" -> "backend:port" */
  services?: Record<string, string>;
  /** Connect upstream from the client's own address (IP_TRANSPARENT), as weft's source-preservation option does. */
  preserveSource?: boolean;
}

const config = JSON.parse(process.argv[2] ?? '{}') as ForwarderConfig;
const native = loadNativeSocket();
if (native === null) throw new Error('native socket addon not built');

const PORTS = { outbound: 15001, inbound: 15006, hbone: 15008 } as const;

function upstreamSocket(srcIp: string, host: string, port: number): net.Socket {
  if (config.preserveSource !== true) return net.connect({ host, port });
  // 0x4d3 is not needed on the socket: replies are marked by the runtime namespace's own rule (reference §2.5).
  const fd = native!.connectTransparent(srcIp, host, port);
  return new net.Socket({ fd, readable: true, writable: true });
}

for (const [direction, port] of Object.entries(PORTS)) {
  const fd = native.listenTransparent('0.0.0.0', port, 511);
  const server = net.createServer((client) => {
    const src = `${client.remoteAddress}:${client.remotePort}`;
    const dst = `${client.localAddress}:${client.localPort}`;
    const target = (direction === 'outbound' ? config.services?.[dst] : undefined) ?? dst;
    const [host, p] = [target.slice(0, target.lastIndexOf(':')), Number(target.slice(target.lastIndexOf(':') + 1))];
    const upstream = upstreamSocket(client.remoteAddress ?? '', host, p);
    let sent = 0;
    let received = 0;
    client.on('data', (d: Buffer) => (sent += d.length));
    upstream.on('data', (d: Buffer) => (received += d.length));
    client.pipe(upstream);
    upstream.pipe(client);
    let logged = false;
    const done = (error?: Error): void => {
      client.destroy();
      upstream.destroy();
      if (logged) return;
      logged = true;
      process.stderr.write(JSON.stringify({ direction, src, dst, upstream: target, bytesSent: sent, bytesReceived: received, error: error?.message }) + '\n');
    };
    client.on('close', () => done());
    upstream.on('close', () => done());
    client.on('error', done);
    upstream.on('error', done);
  });
  server.listen({ fd });
}
process.stdout.write('ready\n');
