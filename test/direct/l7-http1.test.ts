// HTTP/1.1 through weft's L7 path with real upstreams: filters on live traffic, keep-alive, pipelining, bodies, telemetry, access log, traceparent, malformed upstream responses and leak checks.
import { afterEach, describe, expect, it } from 'vitest';
import net from 'node:net';
import { once } from 'node:events';
import { request } from 'undici';
import { makeConfig, rawExchange, startHttpUpstream, startProxy, type ProxyHarness, type Upstream } from './l7-harness.js';
import type { L7Filter } from '../../runtime/l7/l7-filter.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function serviceConfig(upstreamPort: number, extra: Record<string, unknown> = {}): ReturnType<typeof makeConfig> {
  return makeConfig({
    workloads: [{ name: 'echo-1', addresses: ['127.0.0.1'], labels: { app: 'echo' } }],
    services: [{ name: 'echo', addresses: ['10.96.0.10'], ports: [{ port: 80, targetPort: upstreamPort, appProtocol: 'http' }], selector: { app: 'echo' } }],
    ...extra,
  });
}

async function echoUpstream(): Promise<Upstream> {
  const up = await startHttpUpstream('127.0.0.1', 0, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      res.setHeader('x-seen-headers', JSON.stringify(req.headers));
      res.setHeader('x-seen-url', req.url ?? '');
      res.end(body.length > 0 ? body : 'hello');
    });
  });
  cleanups.push(() => up.close());
  return up;
}

async function proxyFor(up: Upstream, filters: L7Filter[] = [], extra: Record<string, unknown> = {}): Promise<ProxyHarness> {
  const h = await startProxy(serviceConfig(up.port, extra), 'echo.default', 80, { extraFilters: () => filters });
  cleanups.push(() => h.close());
  return h;
}

const headerRewrite: L7Filter = {
  name: 'header-rewrite',
  start: () => ({
    onRequestHeaders: (headers) => {
      headers.set('x-rewritten', 'yes');
      headers.remove('x-drop-me');
      return undefined;
    },
    onResponseHeaders: (_status, headers) => {
      headers.set('x-from-filter', 'response');
      return undefined;
    },
  }),
};

describe('L7 HTTP/1.1 proxying', () => {
  it('runs request and response header filters on live traffic and adds traceparent', async () => {
    const up = await echoUpstream();
    const h = await proxyFor(up, [headerRewrite]);
    const res = await request(`http://127.0.0.1:${h.port}/a/b?q=1`, { headers: { 'x-drop-me': '1', host: 'echo.default' } });
    expect(res.statusCode).toBe(200);
    expect(await res.body.text()).toBe('hello');
    expect(res.headers['x-from-filter']).toBe('response');
    const seen = JSON.parse(String(res.headers['x-seen-headers'])) as Record<string, string>;
    expect(seen['x-rewritten']).toBe('yes');
    expect(seen['x-drop-me']).toBeUndefined();
    expect(seen.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
    expect(res.headers['x-seen-url']).toBe('/a/b?q=1');
  });

  it('continues an incoming trace with a new span id', async () => {
    const up = await echoUpstream();
    const h = await proxyFor(up);
    const incoming = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    const res = await request(`http://127.0.0.1:${h.port}/`, { headers: { traceparent: incoming } });
    await res.body.text();
    const seen = JSON.parse(String(res.headers['x-seen-headers'])) as Record<string, string>;
    expect(seen.traceparent).toMatch(/^00-4bf92f3577b34da6a3ce929d0e0e4736-[0-9a-f]{16}-01$/);
    expect(seen.traceparent).not.toBe(incoming);
    await new Promise((r) => setImmediate(r));
    expect(h.accessLines.at(-1)).toMatchObject({ trace_id: '4bf92f3577b34da6a3ce929d0e0e4736', response_code: 200, response_flags: '-', method: 'GET', path: '/' });
  });

  it('reuses upstream connections across keep-alive requests and counts istio_requests_total', async () => {
    const up = await echoUpstream();
    let upstreamConnections = 0;
    up.server.on('connection', () => upstreamConnections++);
    const h = await proxyFor(up);
    for (let i = 0; i < 50; i++) {
      const res = await request(`http://127.0.0.1:${h.port}/n/${i}`);
      await res.body.text();
    }
    expect(upstreamConnections).toBe(1);
    expect(h.proxy.telemetry.count({ response_code: '200', destination_service: 'echo.default.svc.cluster.local' })).toBe(50);
    const text = await h.metrics.render();
    expect(text).toMatch(/istio_requests_total\{[^}]*reporter="waypoint"[^}]*destination_service="echo\.default\.svc\.cluster\.local"[^}]*response_code="200"[^}]*response_flags="-"[^}]*\} 50/);
    expect(text).toMatch(/istio_request_duration_milliseconds_bucket\{[^}]*le="\+Inf"[^}]*\} 50/);
    expect(text).toMatch(/istio_response_bytes_count\{[^}]*\} 50/);
    expect(text).toMatch(/istio_request_bytes_sum/);
  });

  it('answers pipelined requests in order', async () => {
    const up = await echoUpstream();
    const h = await proxyFor(up);
    const req = (p: string): string => `GET ${p} HTTP/1.1\r\nhost: x\r\n\r\n`;
    const { text } = await rawExchange(h.port, req('/one') + req('/two') + req('/three'));
    const urls = [...text.matchAll(/x-seen-url: (\S+)/g)].map((m) => m[1]);
    expect(urls).toEqual(['/one', '/two', '/three']);
  });

  it('answers HEAD without a body but with the upstream content-length, and keeps the connection usable', async () => {
    const up = await startHttpUpstream('127.0.0.1', 0, (req, res) => {
      res.setHeader('x-seen-url', req.url ?? '');
      res.setHeader('content-length', 5);
      res.end(req.method === 'HEAD' ? undefined : 'hello');
    });
    cleanups.push(() => up.close());
    const h = await proxyFor(up);
    const { text } = await rawExchange(h.port, 'HEAD /h HTTP/1.1\r\nhost: x\r\n\r\nGET /g HTTP/1.1\r\nhost: x\r\n\r\n');
    const responses = text.split('HTTP/1.1 ').filter((s) => s !== '');
    expect(responses).toHaveLength(2);
    expect(responses[0]).toMatch(/^200 OK\r\n[\s\S]*content-length: 5\r\n[\s\S]*\r\n$/);
    expect(responses[0]!.endsWith('\r\n\r\n')).toBe(true);
    expect(responses[1]).toMatch(/x-seen-url: \/g[\s\S]*\r\n\r\nhello$/);
  });

  it('forwards content-length and chunked request bodies byte for byte', async () => {
    const up = await echoUpstream();
    const h = await proxyFor(up);
    const body = Buffer.alloc(300_000, 7);
    body.write('start');
    const res = await request(`http://127.0.0.1:${h.port}/upload`, { method: 'POST', body });
    expect(Buffer.from(await res.body.arrayBuffer()).equals(body)).toBe(true);
    const chunked = await rawExchange(h.port, 'POST /c HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n');
    expect(chunked.text).toMatch(/^HTTP\/1\.1 200 OK/);
    expect(chunked.text.endsWith('hello world')).toBe(true);
  });

  it('lets a filter pause for an async callout and answer locally', async () => {
    const up = await echoUpstream();
    const gate: L7Filter = {
      name: 'gate',
      start: (info) => ({
        onRequestHeaders: async () => {
          await new Promise((r) => setTimeout(r, 5));
          return info.path.startsWith('/deny') ? { status: 401, body: 'no\n', headers: [['www-authenticate', 'Bearer']] } : undefined;
        },
      }),
    };
    const h = await proxyFor(up, [gate, headerRewrite]);
    const ok = await request(`http://127.0.0.1:${h.port}/fine`);
    expect(ok.statusCode).toBe(200);
    expect(JSON.parse(String(ok.headers['x-seen-headers']))['x-rewritten']).toBe('yes');
    await ok.body.text();
    const denied = await request(`http://127.0.0.1:${h.port}/deny`);
    expect(denied.statusCode).toBe(401);
    expect(denied.headers['www-authenticate']).toBe('Bearer');
    expect(await denied.body.text()).toBe('no\n');
    expect(up.requests).toBe(1);
  });

  it('buffers bodies for filters that ask, replaces them, and answers 413 past the limit', async () => {
    const up = await echoUpstream();
    const upper: L7Filter = {
      name: 'upper',
      bufferRequestBody: true,
      bufferResponseBody: true,
      start: (_info, access) => ({
        onRequestBody: (body) => {
          access.replaceRequestBody(Buffer.from(body.toString().toUpperCase()));
          return undefined;
        },
        onResponseBody: (body) => {
          access.replaceResponseBody(Buffer.concat([body, Buffer.from('!')]));
          return undefined;
        },
      }),
    };
    const h = await startProxy(serviceConfig(up.port), 'echo.default', 80, { extraFilters: () => [upper], limits: { maxBufferedBodyBytes: 1024 } });
    cleanups.push(() => h.close());
    const res = await request(`http://127.0.0.1:${h.port}/`, { method: 'POST', body: 'quiet words' });
    expect(await res.body.text()).toBe('QUIET WORDS!');
    const big = await rawExchange(h.port, `POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 4000\r\n\r\n${'a'.repeat(4000)}`);
    expect(big.text).toMatch(/^HTTP\/1\.1 413 /);
    expect(big.text).toContain('x-weft-error: WEFT_ERR_BODY_TOO_LARGE');
  });

  it('sends 100 Continue itself when a buffering filter waits for the body', async () => {
    const up = await echoUpstream();
    const buffering: L7Filter = { name: 'buffering', bufferRequestBody: true, start: () => ({ onRequestBody: () => undefined }) };
    const h = await proxyFor(up, [buffering]);
    const sock = net.connect(h.port, '127.0.0.1');
    await once(sock, 'connect');
    let text = '';
    sock.on('data', (d: Buffer) => (text += d.toString()));
    sock.write('POST /e HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: 5\r\n\r\n');
    for (let i = 0; i < 100 && !text.includes('100 Continue'); i++) await new Promise((r) => setTimeout(r, 5));
    expect(text).toBe('HTTP/1.1 100 Continue\r\n\r\n');
    sock.write('hello');
    for (let i = 0; i < 100 && !text.endsWith('hello'); i++) await new Promise((r) => setTimeout(r, 5));
    expect(text).toMatch(/HTTP\/1\.1 200 OK[\s\S]*hello$/);
    expect(text).not.toContain('"expect"');
    sock.destroy();
  });

  it('answers 502 with x-weft-error when the upstream sends a malformed response', async () => {
    const bad = net.createServer((s) => s.once('data', () => s.end('HTTP/1.1 200 OK\r\nbad header\r\n\r\n')));
    bad.listen(0, '127.0.0.1');
    await once(bad, 'listening');
    cleanups.push(() => new Promise<void>((r) => bad.close(() => r())));
    const badPort = (bad.address() as net.AddressInfo).port;
    const h = await startProxy(serviceConfig(badPort), 'echo.default', 80);
    cleanups.push(() => h.close());
    const res = await request(`http://127.0.0.1:${h.port}/`);
    expect(res.statusCode).toBe(502);
    expect(res.headers['x-weft-error']).toBe('WEFT_ERR_UPSTREAM_PROTOCOL');
    await res.body.text();
    await new Promise((r) => setImmediate(r));
    expect(h.accessLines.at(-1)).toMatchObject({ response_code: 502, response_flags: 'UPE' });
  });

  it('relays a close-delimited upstream body and cuts the client off when the upstream dies mid-body', async () => {
    const raw = net.createServer((s) =>
      s.once('data', (d: Buffer) => {
        if (d.toString().startsWith('GET /eof')) s.end('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil close');
        else {
          s.write('HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly part');
          setTimeout(() => s.destroy(), 20);
        }
      }),
    );
    raw.listen(0, '127.0.0.1');
    await once(raw, 'listening');
    cleanups.push(() => new Promise<void>((r) => raw.close(() => r())));
    const h = await startProxy(serviceConfig((raw.address() as net.AddressInfo).port), 'echo.default', 80);
    cleanups.push(() => h.close());
    const eof = await rawExchange(h.port, 'GET /eof HTTP/1.1\r\nhost: x\r\n\r\n', { untilClose: true, idleMs: 3000 });
    expect(eof.text).toMatch(/^HTTP\/1\.1 200 OK\r\n[\s\S]*connection: close\r\n\r\nuntil close$/);
    expect(eof.closed).toBe(true);
    const cut = await rawExchange(h.port, 'GET /cut HTTP/1.1\r\nhost: x\r\n\r\n', { untilClose: true, idleMs: 3000 });
    expect(cut.text.endsWith('only part')).toBe(true);
    expect(cut.closed).toBe(true);
    await new Promise((r) => setImmediate(r));
    expect(h.proxy.telemetry.count({ response_code: '200', response_flags: 'UC' })).toBe(1);
  });

  it('answers 503 UF when the upstream refuses connections', async () => {
    const closed = net.createServer();
    closed.listen(0, '127.0.0.1');
    await once(closed, 'listening');
    const deadPort = (closed.address() as net.AddressInfo).port;
    closed.close();
    const h = await startProxy(serviceConfig(deadPort), 'echo.default', 80);
    cleanups.push(() => h.close());
    const res = await request(`http://127.0.0.1:${h.port}/`);
    expect(res.statusCode).toBe(503);
    expect(res.headers['x-weft-error']).toBe('WEFT_ERR_UPSTREAM_CONNECT');
    await res.body.text();
    expect(h.proxy.telemetry.count({ response_code: '503', response_flags: 'UF' })).toBe(1);
  });

  it('closes keep-alive connections idle past l7.idleTimeoutMs', async () => {
    const up = await echoUpstream();
    const h = await startProxy(serviceConfig(up.port), 'echo.default', 80, { limits: { idleTimeoutMs: 150 } });
    cleanups.push(() => h.close());
    const t0 = Date.now();
    const { text, closed } = await rawExchange(h.port, 'GET / HTTP/1.1\r\nhost: x\r\n\r\n', { untilClose: true, idleMs: 3000 });
    expect(text).toMatch(/^HTTP\/1\.1 200 OK/);
    expect(closed).toBe(true);
    expect(Date.now() - t0).toBeLessThan(2000);
  });

  it('leaks no sockets once clients and the proxy are done', async () => {
    const up = await echoUpstream();
    const h = await proxyFor(up);
    await Promise.all(
      Array.from({ length: 20 }, async (_, i) => {
        const res = await request(`http://127.0.0.1:${h.port}/${i}`, { reset: true });
        await res.body.text();
      }),
    );
    await new Promise((r) => setTimeout(r, 50));
    expect(h.proxy.openSockets().downstream).toBe(0);
    expect(h.proxy.openSockets().upstream).toBeGreaterThan(0);
    await h.close();
    await new Promise((r) => setTimeout(r, 50));
    expect(h.proxy.openSockets()).toEqual({ downstream: 0, upstream: 0 });
  });
});
