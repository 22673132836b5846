// What a drain (shutdown, or the old process of a hot upgrade) does to open connections: HTTP/1 keep-alive requests in flight and the next request of an idle connection are answered with `connection: close` until the deadline, and at the deadline HBONE tunnels end with END_STREAM and FIN on both data paths, never with a reset.
import http from 'node:http';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { startWeft } from '../helpers/weft-harness.js';
import { ID, IP, startEcho, startMesh, type Mesh } from './hbone-fixtures.js';
import type { TunnelClosed } from '../../runtime/hbone/hbone-server.js';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()?.();
});

const UPSTREAM_IP = '127.0.0.41';

/** An HTTP upstream whose `/slow` answers after 400 ms, behind an L7 local port of a running weft. */
async function l7Weft(): Promise<{ w: Awaited<ReturnType<typeof startWeft>>; port: number }> {
  const upstream = http.createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
    if (req.url === '/slow') setTimeout(() => res.end('slow ok'), 400);
    else res.end('ok');
  });
  await new Promise<void>((r) => upstream.listen(0, UPSTREAM_IP, r));
  cleanups.push(async () => {
    upstream.closeAllConnections();
    await new Promise((r) => upstream.close(r));
  });
  const w = await startWeft({
    workloads: [{ name: 'app', namespace: 'default', addresses: [UPSTREAM_IP], labels: { app: 'app' } }],
    services: [{ name: 'web', namespace: 'default', addresses: ['10.96.0.41'], ports: [{ port: 80, targetPort: (upstream.address() as net.AddressInfo).port, appProtocol: 'http' }], selector: { app: 'app' } }],
    // A route makes web an L7 destination.
    routes: [{ host: 'web.default', http: [{ name: 'all', backends: [{ labels: { app: 'app' } }] }] }],
    localPorts: [{ listen: '127.0.0.1:0', service: 'web.default', port: 80 }],
  });
  return { w, port: Object.values(w.app.ports.localPorts)[0] as number };
}

/** A raw HTTP/1.1 client connection: `send` writes one request, `response` reads one whole response (content-length framed). */
async function rawClient(port: number): Promise<{ socket: net.Socket; get(path: string): void; response(): Promise<{ head: string; body: string }>; ended: Promise<string | undefined> }> {
  const socket = net.connect({ host: '127.0.0.1', port });
  await new Promise((r) => socket.once('connect', r));
  let buf = '';
  let waiter: (() => void) | undefined;
  socket.setEncoding('utf8');
  socket.on('data', (d: string) => {
    buf += d;
    waiter?.();
  });
  const ended = new Promise<string | undefined>((resolve) => {
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
    socket.once('end', () => resolve(undefined));
  });
  return {
    socket,
    ended,
    get: (path) => socket.write(`GET ${path} HTTP/1.1\r\nhost: web\r\n\r\n`),
    response: async () => {
      for (;;) {
        const headEnd = buf.indexOf('\r\n\r\n');
        const length = /content-length: (\d+)/i.exec(buf.slice(0, headEnd))?.[1];
        if (headEnd >= 0 && length !== undefined && buf.length >= headEnd + 4 + Number(length)) {
          const head = buf.slice(0, headEnd);
          const body = buf.slice(headEnd + 4, headEnd + 4 + Number(length));
          buf = buf.slice(headEnd + 4 + Number(length));
          return { head, body };
        }
        const more = await Promise.race([new Promise<boolean>((r) => (waiter = () => r(true))), ended.then(() => false)]);
        if (!more) throw new Error(`connection ended before a whole response; got ${JSON.stringify(buf)}`);
      }
    },
  };
}

describe('drain: HTTP/1 keep-alive connections', () => {
  it('answers a request in flight with connection: close although no L4 connection holds the drain open', async () => {
    const { w, port } = await l7Weft();
    const c = await rawClient(port);
    c.get('/slow');
    await new Promise((r) => setTimeout(r, 100));
    const stopped = w.app.shutdown(5_000);
    const res = await c.response();
    expect(res.head).toMatch(/^HTTP\/1\.1 200/);
    expect(res.head).toMatch(/\r\nconnection: close/i);
    expect(res.body).toBe('slow ok');
    expect(await c.ended).toBeUndefined();
    expect((await stopped).forced).toBe(0);
  });

  it('answers the next request of an idle connection, sent while the drain runs, with connection: close', async () => {
    const { w, port } = await l7Weft();
    const c = await rawClient(port);
    c.get('/');
    expect((await c.response()).head).not.toMatch(/connection: close/i);
    const stopped = w.app.shutdown(5_000);
    await new Promise((r) => setTimeout(r, 100));
    c.get('/');
    const res = await c.response();
    expect(res.head).toMatch(/\r\nconnection: close/i);
    expect(res.body).toBe('ok');
    expect(await c.ended).toBeUndefined();
    expect((await stopped).forced).toBe(0);
  });

  it('drains a connection accepted before the drain whose first request arrives after it started', async () => {
    const { w, port } = await l7Weft();
    const c = await rawClient(port);
    await new Promise((r) => setTimeout(r, 50));
    const stopped = w.app.shutdown(5_000);
    await new Promise((r) => setTimeout(r, 50));
    c.get('/');
    const res = await c.response();
    expect(res.head).toMatch(/\r\nconnection: close/i);
    expect(await c.ended).toBeUndefined();
    await stopped;
  });

  it('ends a connection that stays idle with a FIN at the deadline, not a reset', async () => {
    const { w, port } = await l7Weft();
    const c = await rawClient(port);
    c.get('/');
    await c.response();
    const { forced } = await w.app.shutdown(300);
    expect(forced).toBe(1);
    expect(await c.ended).toBeUndefined();
  });
});

describe.each([
  { path: 'native', dataPath: 'auto' as const },
  { path: 'fallback', dataPath: 'node' as const },
])('drain: an HBONE tunnel at the deadline on the $path path', ({ dataPath }) => {
  let mesh: Mesh;

  it('ends with END_STREAM to the client and FIN to the workload while both keep writing, then the connection closes in order', async () => {
    const controls: { close: (reason: string) => void; closed: Promise<TunnelClosed> }[] = [];
    // The node's drain tracks each tunnel's control and calls close('drained') at the deadline (HboneNode).
    mesh = await startMesh({ dataPath, authorize: () => ({ allowed: true }), onConnection: (_t, c) => controls.push(c) });
    cleanups.push(() => mesh.close());
    const echo = await startEcho(IP.server);
    cleanups.push(() => new Promise((r) => echo.server.close(r)));
    const workloadEnds: Promise<string | undefined>[] = [];
    echo.server.on('connection', (s: net.Socket) =>
      workloadEnds.push(
        new Promise((resolve) => {
          s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
          s.once('end', () => resolve(undefined));
        }),
      ),
    );
    const stream = await mesh.a.client.connect({
      sourceIdentity: ID.client,
      sourceAddress: IP.client,
      destination: { address: IP.server, port: echo.port },
      destinationIdentities: [ID.server],
      via: { address: IP.server, port: mesh.hbonePort },
    });
    let error: string | undefined;
    let echoed = 0;
    stream.on('error', (e: Error) => (error = e.message));
    stream.on('data', () => echoed++);
    // As an application does: when the far side ends, end ours.
    stream.once('end', () => stream.end());
    const pinging = setInterval(() => stream.writable && stream.readable && stream.write('ping\n'), 2);
    const closed = new Promise((r) => stream.once('close', r));
    try {
      while (echoed < 5) await new Promise((r) => setTimeout(r, 10));
      // Stop accepting (GOAWAY), then the deadline, then the shutdown closes the server's connections.
      mesh.b.server.goaway();
      expect(controls).toHaveLength(1);
      controls[0]?.close('drained');
      // As App.shutdown: the drain is over when the tunnel reports closed, and the server's connections close next.
      expect((await controls[0]?.closed)?.error).toBeUndefined();
      await mesh.b.server.close();
      await closed;
      expect(error).toBeUndefined();
      expect(await workloadEnds[0]).toBeUndefined();
    } finally {
      clearInterval(pinging);
    }
  });
});
