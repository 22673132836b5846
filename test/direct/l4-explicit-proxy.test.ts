// The local-mode explicit proxy end to end: CONNECT, absolute-form HTTP and SOCKS5 by service name, FQDN and VIP; curl -x; bad handshakes.
import http from 'node:http';
import type net from 'node:net';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, readAll, readBytes, startTcpServer, type TestServer } from '../helpers/tcp-server.js';
import { httpConnect, readHead, socks5Connect } from '../helpers/proxy-clients.js';
import { metricValue, startWeft, type WeftUnderTest } from '../helpers/weft-harness.js';
import { requireCommands } from '../helpers/requirements.js';

const run = promisify(execFile);
let echo: TestServer;
let web: http.Server;
let webPort: number;
let w: WeftUnderTest;
let proxyPort: number;

beforeAll(async () => {
  echo = await startTcpServer('echo', '127.0.0.2');
  web = http.createServer((req, res) => res.end(`hello from web: ${req.method} ${req.url} host=${req.headers.host}`));
  await new Promise<void>((r) => web.listen(0, '127.0.0.3', r));
  webPort = (web.address() as net.AddressInfo).port;
  w = await startWeft({
    workloads: [
      { name: 'echo-1', addresses: ['127.0.0.2'], labels: { app: 'echo' } },
      { name: 'web-1', addresses: ['127.0.0.3'], labels: { app: 'web' } },
    ],
    services: [
      { name: 'echo', addresses: ['10.96.0.20'], ports: [{ port: 7, targetPort: echo.port }], selector: { app: 'echo' } },
      { name: 'web', namespace: 'default', addresses: ['10.96.0.30'], ports: [{ port: 80, targetPort: webPort }], selector: { app: 'web' } },
      { name: 'empty', addresses: ['10.96.0.40'], ports: [{ port: 80 }], selector: { app: 'nobody' } },
    ],
  });
  proxyPort = w.app.ports.explicitProxy as number;
});

afterAll(async () => {
  await w.close();
  await echo.close();
  await new Promise((r) => web.close(r));
});

async function tunnelEcho(socket: net.Socket, payload: string): Promise<string> {
  socket.end(payload);
  return (await readAll(socket)).toString();
}

describe('HTTP CONNECT', () => {
  it.each(['echo.default:7', 'echo.default.svc.cluster.local:7', '10.96.0.20:7', '127.0.0.2:' + 0])('tunnels to %s', async (authority) => {
    const target = authority.endsWith(':0') ? `127.0.0.2:${echo.port}` : authority;
    const socket = await httpConnect(proxyPort, target);
    expect(await tunnelEcho(socket, `via ${target}`)).toBe(`via ${target}`);
  });

  it('answers 503 with x-weft-error for a service without endpoints, and counts it', async () => {
    await expect(httpConnect(proxyPort, 'empty.default:80')).rejects.toThrow(/^HTTP\/1\.1 503 [^]*x-weft-error: WEFT_ERR_NO_HEALTHY_UPSTREAM/);
    const entry = await w.waitForLog((e) => e.destination_service === 'empty.default.svc.cluster.local');
    expect(entry).toMatchObject({ response_flags: 'UH', close_reason: 'failed' });
    expect(metricValue(await w.metrics(), 'istio_tcp_connections_failed_total', { response_flags: 'UH' })).toBeGreaterThanOrEqual(1);
  });

  it('answers 502 for an upstream that refuses, naming the address', async () => {
    const closed = await startTcpServer('echo');
    await closed.close();
    await expect(httpConnect(proxyPort, `127.0.0.1:${closed.port}`)).rejects.toThrow(/502 [^]*x-weft-error: WEFT_ERR_UPSTREAM_CONNECT/);
    const entry = await w.waitForLog((e) => e.downstream_local_address === `127.0.0.1:${closed.port}`);
    expect(entry).toMatchObject({ response_flags: 'UF', route: 'passthrough' });
    expect(String(entry.error)).toContain(`connect to 127.0.0.1:${closed.port} failed: ECONNREFUSED`);
  });

  it('refuses a CONNECT to weft itself (a loop)', async () => {
    await expect(httpConnect(proxyPort, `127.0.0.1:${proxyPort}`)).rejects.toThrow(/403 [^]*WEFT_ERR_SELF_CALL/);
  });

  it('rejects unknown names with 502 and a clear message', async () => {
    await expect(httpConnect(proxyPort, 'nosuch.invalid:80')).rejects.toThrow(/502 [^]*WEFT_ERR_UNKNOWN_SERVICE/);
  });
});

describe('absolute-form HTTP', () => {
  it('forwards GET http://web.default/... in origin form', async () => {
    const socket = await connect(proxyPort);
    socket.write('GET http://web.default/path?q=1 HTTP/1.1\r\nHost: web.default\r\nProxy-Connection: keep-alive\r\n\r\n');
    const response = (await readAll(socket)).toString();
    expect(response).toMatch(/^HTTP\/1\.1 200 OK/);
    expect(response).toContain('hello from web: GET /path?q=1 host=web.default');
  });

  it('works with curl -x and HTTP_PROXY, and curl --socks5-hostname', async (ctx) => {
    requireCommands(ctx, 'curl');
    const viaFlag = await run('curl', ['-sS', '-x', `http://127.0.0.1:${proxyPort}`, 'http://web.default.svc.cluster.local/flag']);
    expect(viaFlag.stdout).toBe('hello from web: GET /flag host=web.default.svc.cluster.local');
    const viaEnv = await run('curl', ['-sS', 'http://10.96.0.30/env'], { env: { ...process.env, http_proxy: `http://127.0.0.1:${proxyPort}` } });
    expect(viaEnv.stdout).toBe('hello from web: GET /env host=10.96.0.30');
    const viaSocks = await run('curl', ['-sS', '--socks5-hostname', `127.0.0.1:${proxyPort}`, 'http://web.default/socks']);
    expect(viaSocks.stdout).toBe('hello from web: GET /socks host=web.default');
    const viaConnect = await run('curl', ['-sS', '-p', '-x', `http://127.0.0.1:${proxyPort}`, 'http://web.default/tunnel']);
    expect(viaConnect.stdout).toBe('hello from web: GET /tunnel host=web.default');
  });
});

describe('SOCKS5', () => {
  it('connects by service name and by IP', async () => {
    for (const host of ['echo.default', '10.96.0.20']) {
      const { socket, reply } = await socks5Connect(proxyPort, host, 7);
      expect(reply).toBe(0x00);
      expect(await tunnelEcho(socket, `socks ${host}`)).toBe(`socks ${host}`);
    }
  });

  it('replies "connection refused" (5) when the upstream refuses', async () => {
    const closed = await startTcpServer('echo');
    await closed.close();
    const { socket, reply } = await socks5Connect(proxyPort, '127.0.0.1', closed.port);
    expect(reply).toBe(0x05);
    socket.destroy();
  });

  it('replies "command not supported" (7) to BIND and "address type not supported" (8) to atyp 9', async () => {
    for (const [request, code] of [
      [[0x05, 0x02, 0x00, 0x01, 127, 0, 0, 1, 0, 80], 0x07],
      [[0x05, 0x01, 0x00, 0x09, 1, 2, 3, 4, 0, 80], 0x08],
    ] as const) {
      const socket = await connect(proxyPort);
      socket.write(Buffer.from([0x05, 0x01, 0x00]));
      expect([...(await readBytes(socket, 2))]).toEqual([0x05, 0x00]);
      socket.write(Buffer.from(request));
      const reply = await readAll(socket);
      expect(reply[1]).toBe(code);
    }
  });

  it('refuses clients that offer only username/password auth with 0xFF', async () => {
    const socket = await connect(proxyPort);
    socket.write(Buffer.from([0x05, 0x01, 0x02]));
    expect([...(await readAll(socket))]).toEqual([0x05, 0xff]);
  });
});

describe('bad input keeps everyone else served', () => {
  it('answers garbage, obs-fold and oversize heads with 4xx and counts them', async () => {
    const cases: [string, RegExp][] = [
      ['\x16\x03\x01garbage\r\n\r\n', /^HTTP\/1\.1 400 /],
      ['CONNECT echo.default:7 HTTP/1.1\r\nX-A: 1\r\n folded\r\n\r\n', /^HTTP\/1\.1 400 [^]*obsolete line folding/],
      ['GET /relative HTTP/1.1\r\nHost: x\r\n\r\n', /^HTTP\/1\.1 400 [^]*absolute-form/],
      ['CONNECT nohostport HTTP/1.1\r\n\r\n', /^HTTP\/1\.1 400 /],
      ['GET http://web.default/ HTTP/2.0\r\n\r\n', /^HTTP\/1\.1 505 /],
      ['GET http://web.default/ HTTP/1.1\r\n' + 'X-Big: ' + 'a'.repeat(20_000) + '\r\n\r\n', /^HTTP\/1\.1 431 /],
    ];
    for (const [bytes, expected] of cases) {
      const socket = await connect(proxyPort);
      socket.write(bytes);
      expect((await readAll(socket)).toString()).toMatch(expected);
    }
    const text = await w.metrics();
    expect(metricValue(text, 'weft_explicit_proxy_handshake_errors_total', { protocol: 'http' })).toBeGreaterThanOrEqual(cases.length);
    // The proxy still serves a well-formed request afterwards.
    const socket = await httpConnect(proxyPort, 'echo.default:7');
    expect(await tunnelEcho(socket, 'still here')).toBe('still here');
  });

  it('survives clients that vanish mid-handshake', async () => {
    for (const partial of [Buffer.from('CONNECT echo.def'), Buffer.from([0x05, 0x01]), Buffer.from([0x05, 0x01, 0x00, 0x05, 0x01, 0x00, 0x03, 20, 0x61])]) {
      const socket = await connect(proxyPort);
      socket.write(partial);
      await new Promise((r) => setTimeout(r, 10));
      socket.destroy();
    }
    await expect.poll(async () => metricValue(await w.metrics(), 'weft_explicit_proxy_handshake_errors_total', { reason: 'client_gone' })).toBeGreaterThanOrEqual(3);
    const { socket, reply } = await socks5Connect(proxyPort, 'echo.default', 7);
    expect(reply).toBe(0);
    expect(await tunnelEcho(socket, 'fine')).toBe('fine');
  });

  it('reads a status line for the CONNECT reply (sanity of the helper)', async () => {
    const socket = await connect(proxyPort);
    socket.write('CONNECT echo.default:7 HTTP/1.1\r\n\r\n');
    expect(await readHead(socket)).toBe('HTTP/1.1 200 Connection established\r\n\r\n');
    socket.destroy();
  });
});
