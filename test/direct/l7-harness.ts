/** Test harness for the L7 path: builds a config, runs createL7Proxy behind a loopback listener that plays the L4 outbound role, and starts real upstream servers. */
import http from 'node:http';
import net from 'node:net';
import { once } from 'node:events';
import { configSchema, type WeftConfig } from '../../runtime/config/config-schema.js';
import { createLogger } from '../../runtime/log.js';
import { ProxyState } from '../../runtime/state/proxy-state.js';
import { MetricsRegistry } from '../../runtime/telemetry/metrics-registry.js';
import { createL7Proxy, type L7Proxy, type L7ProxyOptions } from '../../runtime/l7/l7-proxy.js';
import type { L7Target } from '../../runtime/l7/l7-context.js';

export function makeConfig(input: Record<string, unknown>): WeftConfig {
  return configSchema.parse(input);
}

export interface ProxyHarness {
  proxy: L7Proxy;
  state: ProxyState;
  metrics: MetricsRegistry;
  port: number;
  accessLines: Record<string, unknown>[];
  close(): Promise<void>;
}

/** Every accepted connection is handed to L7 for `service` (name.namespace) and `servicePort`, like the L4 outbound path would. */
export async function startProxy(config: WeftConfig, service: string, servicePort: number, extra: Partial<L7ProxyOptions> = {}): Promise<ProxyHarness> {
  const state = new ProxyState(config);
  const metrics = new MetricsRegistry();
  const accessLines: Record<string, unknown>[] = [];
  const proxy = createL7Proxy({
    state,
    metrics,
    logger: createLogger('l7-test'),
    accessLog: { enabled: true, sink: (text) => text.split('\n').filter((l) => l !== '').forEach((l) => accessLines.push(JSON.parse(l) as Record<string, unknown>)) },
    ...extra,
  });
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    const snapshot = state.current;
    const svc = snapshot.serviceByName(service);
    const target: L7Target = {
      service: svc,
      servicePort: svc?.ports.find((p) => p.port === servicePort),
      originalDst: { address: svc?.addresses[0] ?? '127.0.0.1', port: servicePort },
      source: { address: socket.remoteAddress ?? '127.0.0.1', port: socket.remotePort ?? 0 },
    };
    proxy.handleConnection(socket, target);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  return {
    proxy,
    state,
    metrics,
    port,
    accessLines,
    async close() {
      server.close();
      for (const s of sockets) s.destroy();
      await proxy.close();
    },
  };
}

export interface Upstream {
  server: http.Server;
  address: string;
  port: number;
  requests: number;
  close(): Promise<void>;
}

/** An HTTP/1.1 upstream on `address` (and `port`, 0 for any). */
export async function startHttpUpstream(address: string, port: number, handler: http.RequestListener): Promise<Upstream> {
  const server = http.createServer({ keepAliveTimeout: 30_000 });
  const up: Upstream = {
    server,
    address,
    port: 0,
    requests: 0,
    async close() {
      server.closeAllConnections();
      server.close();
      await once(server, 'close').catch(() => undefined);
    },
  };
  server.on('request', (req, res) => {
    up.requests++;
    handler(req, res);
  });
  server.listen(port, address);
  await once(server, 'listening');
  up.port = (server.address() as net.AddressInfo).port;
  return up;
}

/**
 * A raw-socket upstream on `address` (port 0): each request it frames (a head and its content-length body) goes to
 * `onRequest`, whose answer is written back as the whole response. For tests that pin exact bytes on both sides.
 */
export async function startRawUpstream(address: string, onRequest: (request: string) => string): Promise<{ server: net.Server; port: number }> {
  const server = net.createServer((s) => {
    let buf = '';
    s.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end === -1) return;
        const length = /\r\ncontent-length: *(\d+)/i.exec(buf.slice(0, end))?.[1];
        const total = end + 4 + Number(length ?? 0);
        if (buf.length < total) return;
        const request = buf.slice(0, total);
        buf = buf.slice(total);
        s.write(onRequest(request));
      }
    });
    s.on('error', () => s.destroy());
  });
  server.listen(0, address);
  await once(server, 'listening');
  return { server, port: (server.address() as net.AddressInfo).port };
}

/** Writes raw bytes and collects everything the proxy sends until it closes or `idleMs` passes without data. */
export async function rawExchange(port: number, bytes: string | Buffer, opts: { idleMs?: number; untilClose?: boolean } = {}): Promise<{ text: string; closed: boolean }> {
  const socket = net.connect(port, '127.0.0.1');
  await once(socket, 'connect');
  let text = '';
  let closed = false;
  socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
  socket.on('error', () => undefined);
  socket.write(bytes);
  await new Promise<void>((resolve) => {
    let timer = setTimeout(resolve, opts.idleMs ?? 300);
    socket.on('data', () => {
      if (opts.untilClose === true) return;
      clearTimeout(timer);
      timer = setTimeout(resolve, opts.idleMs ?? 300);
    });
    socket.on('close', () => {
      closed = true;
      clearTimeout(timer);
      resolve();
    });
  });
  socket.destroy();
  return { text, closed };
}

/** `n` upstreams on 127.0.0.2, 127.0.0.3, ... sharing one port (a service's targetPort); each answers with its name. */
export async function startFleet(n: number, handler: (name: string, req: http.IncomingMessage, res: http.ServerResponse) => void): Promise<{ ups: Upstream[]; port: number; close(): Promise<void> }> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const ups: Upstream[] = [];
    try {
      const first = await startHttpUpstream('127.0.0.2', 0, (req, res) => handler('up-0', req, res));
      ups.push(first);
      for (let i = 1; i < n; i++) {
        const name = `up-${i}`;
        ups.push(await startHttpUpstream(`127.0.0.${i + 2}`, first.port, (req, res) => handler(name, req, res)));
      }
      return { ups, port: first.port, close: async () => void (await Promise.all(ups.map((u) => u.close()))) };
    } catch {
      await Promise.all(ups.map((u) => u.close()));
    }
  }
  throw new Error('could not bind a shared port on 127.0.0.2..');
}

/** Workloads up-0..up-(n-1) at 127.0.0.2.. with `labelsOf(i)`, selected by a service `name` on port 80. */
export function fleetConfig(n: number, upstreamPort: number, labelsOf: (i: number) => Record<string, string>, extra: Record<string, unknown> = {}): WeftConfig {
  return makeConfig({
    workloads: Array.from({ length: n }, (_, i) => ({ name: `up-${i}`, addresses: [`127.0.0.${i + 2}`], labels: { app: 'fleet', ...labelsOf(i) } })),
    services: [{ name: 'fleet', addresses: ['10.96.0.30'], ports: [{ port: 80, targetPort: upstreamPort, appProtocol: 'http' }], selector: { app: 'fleet' } }],
    ...extra,
  });
}
