// Request smuggling and abuse through weft's L7 HTTP/1.1 path: one raw-socket case per attack, each with the exact status, the x-weft-error marker and a closed connection.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeConfig, rawExchange, startHttpUpstream, startProxy, type ProxyHarness, type Upstream } from './l7-harness.js';

let up: Upstream;
let h: ProxyHarness;

beforeAll(async () => {
  up = await startHttpUpstream('127.0.0.1', 0, (_req, res) => res.end('ok'));
  const config = makeConfig({
    workloads: [{ name: 'web-1', addresses: ['127.0.0.1'], labels: { app: 'web' } }],
    services: [{ name: 'web', addresses: ['10.96.0.20'], ports: [{ port: 80, targetPort: up.port, appProtocol: 'http' }], selector: { app: 'web' } }],
  });
  h = await startProxy(config, 'web.default', 80, { limits: { headersTimeoutMs: 200, maxHeaders: 20, maxRequestHeadersBytes: 4096 } });
});

afterAll(async () => {
  await h.close();
  await up.close();
});

const cases: { name: string; bytes: string; status: number; code: string }[] = [
  { name: 'conflicting content-length and transfer-encoding', bytes: 'POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n', status: 400, code: 'WEFT_ERR_BAD_REQUEST' },
  { name: 'two different content-lengths', bytes: 'POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello!', status: 400, code: 'WEFT_ERR_BAD_REQUEST' },
  { name: 'a transfer coding weft does not implement', bytes: 'POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: gzip, chunked\r\n\r\n0\r\n\r\n', status: 501, code: 'WEFT_ERR_BAD_REQUEST' },
  { name: 'transfer-encoding not ending in chunked', bytes: 'POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked, gzip\r\n\r\n0\r\n\r\n', status: 400, code: 'WEFT_ERR_BAD_REQUEST' },
  { name: 'transfer-encoding on HTTP/1.0', bytes: 'POST / HTTP/1.0\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n', status: 400, code: 'WEFT_ERR_BAD_REQUEST' },
  { name: 'a lone LF ending the trailer section', bytes: 'POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\nGET /s HTTP/1.1\r\nhost: x\r\n\r\n', status: 400, code: 'WEFT_ERR_BAD_REQUEST' },
  { name: 'an absolute-form target with userinfo', bytes: 'GET http://a@b/ HTTP/1.1\r\nhost: b\r\n\r\n', status: 400, code: 'WEFT_ERR_BAD_REQUEST' },
  { name: 'CONNECT to an HTTP service', bytes: 'CONNECT x:80 HTTP/1.1\r\nhost: x:80\r\n\r\n', status: 405, code: 'WEFT_ERR_METHOD_NOT_ALLOWED' },
  { name: 'transfer-encoding twice', bytes: 'POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n', status: 400, code: 'WEFT_ERR_BAD_REQUEST' },
  { name: 'obs-fold continuation line', bytes: 'GET / HTTP/1.1\r\nhost: x\r\nx-a: one\r\n two\r\n\r\n', status: 400, code: 'WEFT_ERR_BAD_REQUEST' },
  { name: 'invalid header name (space before colon)', bytes: 'GET / HTTP/1.1\r\nhost: x\r\ncontent-length : 0\r\n\r\n', status: 400, code: 'WEFT_ERR_BAD_REQUEST' },
  { name: 'invalid header name characters', bytes: 'GET / HTTP/1.1\r\nhost: x\r\nx(a): 1\r\n\r\n', status: 400, code: 'WEFT_ERR_BAD_REQUEST' },
  { name: 'invalid header value (NUL)', bytes: 'GET / HTTP/1.1\r\nhost: x\r\nx-a: a\u0000b\r\n\r\n', status: 400, code: 'WEFT_ERR_BAD_REQUEST' },
  { name: 'invalid header value (bare CR)', bytes: 'GET / HTTP/1.1\r\nhost: x\r\nx-a: a\rb\r\n\r\n', status: 400, code: 'WEFT_ERR_BAD_REQUEST' },
  { name: 'bare LF line endings', bytes: 'GET / HTTP/1.1\nhost: x\n\n', status: 400, code: 'WEFT_ERR_BAD_REQUEST' },
  { name: 'missing host on HTTP/1.1', bytes: 'GET / HTTP/1.1\r\nx-a: 1\r\n\r\n', status: 400, code: 'WEFT_ERR_BAD_REQUEST' },
  { name: 'duplicate host', bytes: 'GET / HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n', status: 400, code: 'WEFT_ERR_BAD_REQUEST' },
  { name: 'invalid chunk size', bytes: 'POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n', status: 400, code: 'WEFT_ERR_BAD_REQUEST' },
  { name: 'request-target with a space-smuggled version', bytes: 'GET /a HTTP/1.1 HTTP/1.1\r\nhost: x\r\n\r\n', status: 400, code: 'WEFT_ERR_BAD_REQUEST' },
  { name: 'unsupported HTTP version', bytes: 'GET / HTTP/2.0\r\nhost: x\r\n\r\n', status: 505, code: 'WEFT_ERR_BAD_REQUEST' },
  { name: 'HTTP/0.9 style request line', bytes: 'GET /\r\n\r\n', status: 400, code: 'WEFT_ERR_BAD_REQUEST' },
  { name: 'oversized headers', bytes: `GET / HTTP/1.1\r\nhost: x\r\nx-big: ${'a'.repeat(5000)}\r\n\r\n`, status: 431, code: 'WEFT_ERR_HEADERS_TOO_LARGE' },
  { name: 'too many headers', bytes: `GET / HTTP/1.1\r\nhost: x\r\n${Array.from({ length: 30 }, (_, i) => `x-h${i}: v`).join('\r\n')}\r\n\r\n`, status: 431, code: 'WEFT_ERR_HEADERS_TOO_LARGE' },
];

describe('L7 HTTP/1.1 hardening', () => {
  for (const c of cases) {
    it(`rejects ${c.name} with ${c.status} and closes`, async () => {
      const before = up.requests;
      const { text, closed } = await rawExchange(h.port, c.bytes, { untilClose: true, idleMs: 2000 });
      expect(text).toMatch(new RegExp(`^HTTP/1\\.1 ${c.status} `));
      expect(text).toContain(`x-weft-error: ${c.code}`);
      expect(text).toContain('connection: close');
      expect(closed).toBe(true);
      expect(up.requests).toBe(before);
    });
  }

  it('answers 408 to a head that arrives too slowly (slowloris)', async () => {
    const { text, closed } = await rawExchange(h.port, 'GET / HTTP/1.1\r\nhost: x\r\nx-slow: ', { untilClose: true, idleMs: 3000 });
    expect(text).toMatch(/^HTTP\/1\.1 408 /);
    expect(text).toContain('x-weft-error: WEFT_ERR_HEADERS_TIMEOUT');
    expect(closed).toBe(true);
  });

  it('does not let a smuggled second request ride inside a body', async () => {
    const before = up.requests;
    // A front end trusting content-length would forward one request; weft must frame exactly the same way.
    const { text } = await rawExchange(h.port, 'POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 30\r\n\r\nGET /smuggled HTTP/1.1\r\nx: y\r\n\r\n');
    expect(text.match(/HTTP\/1\.1 200/g)?.length).toBe(1);
    expect(up.requests).toBe(before + 1);
  });

  it('holds no downstream connection after all the abuse above, and still serves', async () => {
    for (let i = 0; i < 50 && h.proxy.openSockets().downstream > 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(h.proxy.openSockets().downstream).toBe(0);
    const ok = await rawExchange(h.port, 'GET / HTTP/1.1\r\nhost: x\r\n\r\n');
    expect(ok.text).toMatch(/^HTTP\/1\.1 200 OK/);
  });

  it('treats HTTP/1.2 as HTTP/1.1 and ignores an empty line before the request line', async () => {
    const v12 = await rawExchange(h.port, 'GET / HTTP/1.2\r\nhost: x\r\n\r\n');
    expect(v12.text).toMatch(/^HTTP\/1\.1 200 OK/);
    const leading = await rawExchange(h.port, '\r\nGET / HTTP/1.1\r\nhost: x\r\n\r\n');
    expect(leading.text).toMatch(/^HTTP\/1\.1 200 OK/);
  });

  it('still serves well-formed requests with obs-text values and HTTP/1.0', async () => {
    const ok = await rawExchange(h.port, 'GET / HTTP/1.1\r\nhost: x\r\nx-latin: caf\u00e9\r\n\r\n');
    expect(ok.text).toMatch(/^HTTP\/1\.1 200 OK/);
    const old = await rawExchange(h.port, 'GET / HTTP/1.0\r\n\r\n', { untilClose: true, idleMs: 2000 });
    expect(old.text).toMatch(/^HTTP\/1\.1 200 OK/);
    expect(old.text.endsWith('ok')).toBe(true);
    expect(old.closed).toBe(true);
  });
});
