// Byte-exactness and lifecycle of proxied streams: half-close both ways, ≥100 MB each way, many concurrent connections, idle and connect timeouts.
import net from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import { spawn, type ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, readAll, roundTrip, startTcpServer, type TestServer } from '../helpers/tcp-server.js';
import { httpConnect } from '../helpers/proxy-clients.js';
import { metricValue, startWeft, type WeftUnderTest } from '../helpers/weft-harness.js';
import { requireCommands } from '../helpers/requirements.js';

let echo: TestServer;
let w: WeftUnderTest;
let port: number;

beforeAll(async () => {
  echo = await startTcpServer('echo', '127.0.0.2');
  w = await startWeft({
    limits: { idleTimeoutMs: 400, connectTimeoutMs: 300 },
    workloads: [{ name: 'echo-1', addresses: ['127.0.0.2'], labels: { app: 'echo' } }],
    services: [{ name: 'echo', addresses: ['10.96.0.20'], ports: [{ port: 7, targetPort: echo.port }], selector: { app: 'echo' } }],
    localPorts: [{ listen: '127.0.0.1:0', service: 'echo.default', port: 7 }],
  });
  port = Object.values(w.app.ports.localPorts)[0] as number;
});

afterAll(async () => {
  await w.close();
  await echo.close();
});

describe('half-close', () => {
  it('keeps the response direction open after the client shuts down its write side', async () => {
    // A server that answers only after the request is complete (its FIN arrived), like a request/response protocol over TCP.
    const upstream = net.createServer({ allowHalfOpen: true }, (s) => {
      const chunks: Buffer[] = [];
      s.on('data', (c: Buffer) => chunks.push(c));
      s.on('end', () => setTimeout(() => s.end(`got ${Buffer.concat(chunks).length} bytes`), 50));
    });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    const target = `127.0.0.1:${(upstream.address() as net.AddressInfo).port}`;
    const socket = await httpConnect(w.app.ports.explicitProxy as number, target);
    socket.end(Buffer.alloc(1000, 1));
    expect((await readAll(socket)).toString()).toBe('got 1000 bytes');
    upstream.close();
  });

  it('delivers the upstream FIN while the client keeps sending', async () => {
    const upstream = net.createServer({ allowHalfOpen: true }, (s) => {
      s.resume();
      s.end('early bye');
    });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    const socket = await httpConnect(w.app.ports.explicitProxy as number, `127.0.0.1:${(upstream.address() as net.AddressInfo).port}`);
    const received = readAll(socket);
    expect((await received).toString()).toBe('early bye');
    // Our direction is still open: writes after the peer's FIN are accepted, then we close.
    expect(socket.write('late')).toBe(true);
    socket.end();
    upstream.close();
  });
});

describe('large transfers', () => {
  it('copies 128 MiB each way byte-exact', { timeout: 120_000 }, async () => {
    const total = 128 * 1024 * 1024;
    const block = randomBytes(1024 * 1024);
    const sent = createHash('sha256');
    const got = createHash('sha256');
    let received = 0;
    const socket = await connect(port);
    const done = new Promise<void>((resolve, reject) => {
      socket.on('data', (c: Buffer) => {
        got.update(c);
        received += c.length;
      });
      socket.on('end', resolve);
      socket.on('error', reject);
    });
    for (let i = 0; i < total / block.length; i++) {
      const chunk = Buffer.from(block);
      chunk.writeUInt32BE(i, 0);
      sent.update(chunk);
      if (!socket.write(chunk)) await new Promise((r) => socket.once('drain', r));
    }
    socket.end();
    await done;
    expect(received).toBe(total);
    expect(got.digest('hex')).toBe(sent.digest('hex'));
    const entry = await w.waitForLog((e) => e.bytes_received === total);
    expect(entry).toMatchObject({ bytes_sent: total, close_reason: 'complete' });
  });
});

describe('concurrency', () => {
  it('serves 500 concurrent connections, each with its own bytes', async () => {
    const before = metricValue(await w.metrics(), 'istio_tcp_connections_closed_total', { destination_service_name: 'echo' });
    const results = await Promise.all(Array.from({ length: 500 }, (_, i) => roundTrip(port, `conn-${i}-${'x'.repeat(i)}`)));
    results.forEach((r, i) => expect(r.toString()).toBe(`conn-${i}-${'x'.repeat(i)}`));
    await expect.poll(async () => metricValue(await w.metrics(), 'istio_tcp_connections_closed_total', { destination_service_name: 'echo' }) - before).toBe(500);
  });
});

describe('timeouts and failures', () => {
  it('closes idle connections after idleTimeoutMs and says so in the access log', async () => {
    const socket = await connect(port);
    socket.write('hi');
    const ended = new Promise((r) => socket.once('end', r));
    socket.resume();
    await ended;
    socket.destroy();
    const entry = await w.waitForLog((e) => e.close_reason === 'idle_timeout');
    expect(entry).toMatchObject({ destination_service: 'echo.default.svc.cluster.local', bytes_received: 2, bytes_sent: 2 });
  });

  it('gives up on an upstream that never answers the SYN after connectTimeoutMs (504)', async (ctx) => {
    requireCommands(ctx, 'python3');
    // A listener with a full accept queue: the kernel drops further SYNs, so connect() hangs like a black hole.
    const hole: ChildProcess = spawn('python3', ['-c', 'import socket,sys,time\ns=socket.socket()\ns.bind(("127.0.0.1",0))\ns.listen(0)\nprint(s.getsockname()[1],flush=True)\ntime.sleep(60)']);
    try {
      const holePort = await new Promise<number>((resolve) => hole.stdout?.once('data', (d: Buffer) => resolve(Number(d.toString().trim()))));
      // Fill the accept queue (backlog 0 holds one); the second SYN is already dropped, so do not wait for it.
      const fillers = [0, 1].map(() => net.connect(holePort, '127.0.0.1').on('error', () => undefined));
      await new Promise((r) => fillers[0]?.once('connect', r));
      const started = Date.now();
      const socket = await connect(w.app.ports.explicitProxy as number);
      socket.write(`CONNECT 127.0.0.1:${holePort} HTTP/1.1\r\n\r\n`);
      const reply = (await readAll(socket)).toString();
      expect(reply).toMatch(/^HTTP\/1\.1 504 [^]*x-weft-error: WEFT_ERR_UPSTREAM_TIMEOUT/);
      expect(Date.now() - started).toBeLessThan(3_000);
      for (const f of fillers) f.destroy();
      const text = await w.metrics();
      expect(metricValue(text, 'istio_tcp_connections_failed_total', { response_flags: 'UF' })).toBeGreaterThanOrEqual(1);
    } finally {
      hole.kill();
    }
  });
});
