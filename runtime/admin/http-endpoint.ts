/** A tiny HTTP server for weft's own endpoints (admin, metrics, readiness): exact-path routes, off the data path. */
import type { IncomingMessage, Server } from 'node:http';
import { WeftError } from '../errors.js';
import { parseSocketAddress } from '../config/socket-address.js';
import { handleFd, socketHandover } from '../upgrade/socket-handover.js';

// Not `import http from 'node:http'`: an ES module namespace of a builtin reads every export, and on Node 24 the
// WebSocket, CloseEvent and MessageEvent getters of node:http load Node's bundled undici with HTTP/2 and TLS (about
// 13 MB in a bare Node 24 process). The CommonJS object leaves them unread. Taken when an endpoint starts, not at
// import: worker threads import this module but serve no endpoint, and never load node:http's server side.

export type RouteHandler = (req: IncomingMessage, url: URL) => Promise<EndpointResponse> | EndpointResponse;
export interface EndpointResponse {
  status: number;
  body: string;
  contentType?: string;
}

export interface HttpEndpoint {
  server: Server;
  port: number;
  /** Stops accepting (a successor took the socket over); requests in progress finish. */
  stopAccepting(): void;
  close(): Promise<void>;
}

export function json(status: number, value: unknown): EndpointResponse {
  return { status, body: JSON.stringify(value, null, 2) + '\n', contentType: 'application/json' };
}

export async function startHttpEndpoint(name: string, address: string, routes: Record<string, RouteHandler>): Promise<HttpEndpoint> {
  const addr = parseSocketAddress(address);
  if (addr === undefined) throw new WeftError('WEFT_ERR_LISTEN', `${name}: "${address}" is not an ip:port address`);
  const server = process.getBuiltinModule('node:http').createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://weft.local');
    const handler = routes[url.pathname];
    const reply = (r: EndpointResponse): void => {
      res.writeHead(r.status, { 'content-type': r.contentType ?? 'text/plain; charset=utf-8', 'cache-control': 'no-store' });
      res.end(r.body);
    };
    if (handler === undefined) return reply({ status: 404, body: `no such endpoint; try: ${Object.keys(routes).join(' ')}\n` });
    Promise.resolve()
      .then(() => handler(req, url))
      .then(reply, (err: unknown) => reply({ status: 500, body: `${(err as Error).message}\n` }));
  });
  server.keepAliveTimeout = 5_000;
  const key = `${name} ${address}`;
  const listenOn = (target: { fd: number } | { host: string; port: number }): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      server.once('error', (err) => reject(new WeftError('WEFT_ERR_LISTEN', `${name}: cannot listen on ${address}: ${err.message}`, { cause: err })));
      server.listen(target, () => resolve());
    });
  // A hot upgrade hands the socket over; it starts accepting once the whole app has started (socket-handover.ts).
  const [inherited] = socketHandover.take(key, 'tcp');
  if (inherited === undefined) await listenOn({ host: addr.host, port: addr.port });
  else await socketHandover.defer(() => listenOn({ fd: inherited.fd }));
  const port = inherited?.port ?? (server.address() as { port: number }).port;
  const release = socketHandover.hold({ key, kind: 'tcp', port }, () => (server.listening ? handleFd((server as unknown as { _handle?: unknown })._handle) : undefined));
  return {
    server,
    port,
    stopAccepting: () => {
      release();
      if (server.listening) server.close();
    },
    close: () =>
      new Promise((resolve) => {
        release();
        server.closeAllConnections();
        if (!server.listening) return resolve();
        server.close(() => resolve());
      }),
  };
}
