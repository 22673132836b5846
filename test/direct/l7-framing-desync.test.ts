// Request smuggling regression suite: raw HTTP/1.1 through weft's L7 path to a lenient origin that records every byte and frames requests as permissive servers do (a lone LF ends a line). For every framing class the origin must frame exactly the requests whose answers the client got, and no byte weft rejected may reach it.
import net from 'node:net';
import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeConfig, rawExchange, startProxy, type ProxyHarness } from './l7-harness.js';
import { startLenientOrigin, type LenientOrigin } from '../helpers/lenient-origin.js';

let origin: LenientOrigin;
let h: ProxyHarness;

beforeAll(async () => {
  origin = await startLenientOrigin();
  const config = makeConfig({
    workloads: [{ name: 'web-1', addresses: ['127.0.0.1'], labels: { app: 'web' } }],
    services: [{ name: 'web', addresses: ['10.96.0.20'], ports: [{ port: 80, targetPort: origin.port, appProtocol: 'http' }], selector: { app: 'web' } }],
    policies: [{ name: 'deny-admin-host', namespace: 'default', action: 'DENY', targetRef: { kind: 'Service', name: 'web' }, rules: [{ to: [{ operation: { hosts: ['admin.example'] } }] }] }],
  });
  h = await startProxy(config, 'web.default', 80, { limits: { headersTimeoutMs: 500 } });
});

afterAll(async () => {
  await h.close();
  await origin.close();
});

const POST_CHUNKED = 'POST /upload HTTP/1.1\r\nhost: web\r\ntransfer-encoding: chunked\r\n\r\n';
const SMUGGLED = 'GET /smuggled HTTP/1.1\r\nhost: web\r\n\r\n';

interface Case {
  name: string;
  bytes: string;
  /** weft's own answer (with `connection: close` and the connection closed); absent when every answer comes from the origin. */
  rejected?: number;
  /** Requests the origin must frame. */
  framed: number;
}

const cases: Case[] = [
  // 1. A rejected chunked body is never read as the next request.
  { name: 'invalid chunk size', bytes: `${POST_CHUNKED}zz\r\n${SMUGGLED}`, rejected: 400, framed: 0 },
  { name: 'chunk size line ended by a lone LF', bytes: `${POST_CHUNKED}5\nhello\r\n0\r\n\r\n${SMUGGLED}`, rejected: 400, framed: 0 },
  { name: 'chunk extension ended by a lone LF', bytes: `${POST_CHUNKED}5;a\nhello\r\n0\r\n\r\n${SMUGGLED}`, rejected: 400, framed: 0 },
  { name: 'chunk extension with a bare CR', bytes: `${POST_CHUNKED}5;a\rb\r\nhello\r\n0\r\n\r\n${SMUGGLED}`, rejected: 400, framed: 0 },
  { name: 'chunk data without its CRLF', bytes: `${POST_CHUNKED}5\r\nhello${SMUGGLED}0\r\n\r\n`, rejected: 400, framed: 0 },
  { name: 'chunk data ended by a lone LF', bytes: `${POST_CHUNKED}5\r\nhello\n0\r\n\r\n${SMUGGLED}`, rejected: 400, framed: 0 },
  { name: 'oversized chunk size (integer overflow)', bytes: `${POST_CHUNKED}10000000000000005\r\nhello\r\n0\r\n\r\n${SMUGGLED}`, rejected: 400, framed: 0 },
  // 2. The trailer section has the head's rules.
  { name: 'trailer section ended by a lone LF', bytes: `${POST_CHUNKED}5\r\nhello\r\n0\r\n\n${SMUGGLED}`, rejected: 400, framed: 0 },
  { name: 'trailer field ended by a lone LF', bytes: `${POST_CHUNKED}0\r\nx-t: 1\n\r\n${SMUGGLED}`, rejected: 400, framed: 0 },
  { name: 'trailer line that is no field', bytes: `${POST_CHUNKED}0\r\n${SMUGGLED}`, rejected: 400, framed: 0 },
  { name: 'trailer line starting with a control byte', bytes: `${POST_CHUNKED}0\r\n\u000bx: 1\r\n\r\n${SMUGGLED}`, rejected: 400, framed: 0 },
  { name: 'obs-fold in the trailer section', bytes: `${POST_CHUNKED}0\r\nx: 1\r\n ${SMUGGLED}`, rejected: 400, framed: 0 },
  // CL.TE, TE.CL and TE.TE obfuscation.
  { name: 'CL.TE', bytes: `POST / HTTP/1.1\r\nhost: web\r\ncontent-length: 6\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n${SMUGGLED}`, rejected: 400, framed: 0 },
  { name: 'TE.CL', bytes: `POST / HTTP/1.1\r\nhost: web\r\ntransfer-encoding: chunked\r\ncontent-length: 4\r\n\r\n5c\r\n${SMUGGLED}\r\n0\r\n\r\n`, rejected: 400, framed: 0 },
  { name: 'TE.TE: a second, bogus transfer-encoding', bytes: `POST / HTTP/1.1\r\nhost: web\r\ntransfer-encoding: chunked\r\ntransfer-encoding: x\r\ncontent-length: 4\r\n\r\n0\r\n\r\n${SMUGGLED}`, rejected: 400, framed: 0 },
  { name: 'TE.TE: xchunked', bytes: `POST / HTTP/1.1\r\nhost: web\r\ntransfer-encoding: xchunked\r\n\r\n0\r\n\r\n${SMUGGLED}`, rejected: 400, framed: 0 },
  { name: 'TE.TE: space before the colon', bytes: `POST / HTTP/1.1\r\nhost: web\r\ntransfer-encoding : chunked\r\n\r\n0\r\n\r\n${SMUGGLED}`, rejected: 400, framed: 0 },
  { name: 'TE.TE: vertical tab before the value', bytes: `POST / HTTP/1.1\r\nhost: web\r\ntransfer-encoding:\u000bchunked\r\n\r\n0\r\n\r\n${SMUGGLED}`, rejected: 400, framed: 0 },
  { name: 'TE.TE: obs-fold', bytes: `POST / HTTP/1.1\r\nhost: web\r\ntransfer-encoding:\r\n chunked\r\n\r\n0\r\n\r\n${SMUGGLED}`, rejected: 400, framed: 0 },
  { name: 'TE.TE: chunked, identity', bytes: `POST / HTTP/1.1\r\nhost: web\r\ntransfer-encoding: chunked, identity\r\n\r\n0\r\n\r\n${SMUGGLED}`, rejected: 400, framed: 0 },
  { name: 'a coding weft does not implement (501)', bytes: `POST / HTTP/1.1\r\nhost: web\r\ntransfer-encoding: gzip, chunked\r\n\r\n0\r\n\r\n${SMUGGLED}`, rejected: 501, framed: 0 },
  { name: 'transfer-encoding on HTTP/1.0', bytes: `POST / HTTP/1.0\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n0\r\n\r\n${SMUGGLED}`, rejected: 400, framed: 0 },
  { name: 'content-length list', bytes: `POST / HTTP/1.1\r\nhost: web\r\ncontent-length: 0, 38\r\n\r\n${SMUGGLED}`, rejected: 400, framed: 0 },
  // Lone LF and CR in the head.
  { name: 'lone LF ending a header line', bytes: `GET / HTTP/1.1\r\nhost: web\nx-a: 1\r\n\r\n${SMUGGLED}`, rejected: 400, framed: 0 },
  { name: 'lone CR inside a header value', bytes: `GET / HTTP/1.1\r\nhost: web\r\nx-a: 1\rcontent-length: 38\r\n\r\n${SMUGGLED}`, rejected: 400, framed: 0 },
  { name: 'obs-fold in the head', bytes: `GET / HTTP/1.1\r\nhost: web\r\nx-a: 1\r\n content-length: 38\r\n\r\n${SMUGGLED}`, rejected: 400, framed: 0 },
  // Accepted framings: the origin sees exactly what the client's answers say.
  { name: '0.CL: a GET whose content-length carries a request-looking body', bytes: `GET / HTTP/1.1\r\nhost: web\r\ncontent-length: ${SMUGGLED.length}\r\n\r\n${SMUGGLED}`, framed: 1 },
  { name: 'expect: 100-continue with the body sent at once', bytes: `POST / HTTP/1.1\r\nhost: web\r\nexpect: 100-continue\r\ncontent-length: ${SMUGGLED.length}\r\n\r\n${SMUGGLED}`, framed: 1 },
  { name: 'an obfuscated expect header', bytes: `POST / HTTP/1.1\r\nhost: web\r\nexpect: y 100-continue\r\ncontent-length: ${SMUGGLED.length}\r\n\r\n${SMUGGLED}`, framed: 1 },
  { name: 'a valid chunked body with trailers, then a pipelined request', bytes: `${POST_CHUNKED}5;ext="a b"\r\nhello\r\n0\r\nx-t: 1\r\n\r\nGET /next HTTP/1.1\r\nhost: web\r\n\r\n`, framed: 2 },
  { name: 'a leading empty line before the request line', bytes: '\r\nGET /leading HTTP/1.1\r\nhost: web\r\n\r\n', framed: 1 },
  { name: 'HTTP/1.2 as HTTP/1.1', bytes: 'GET /v12 HTTP/1.2\r\nhost: web\r\n\r\n', framed: 1 },
];

function count(text: string, needle: string): number {
  return text.split(needle).length - 1;
}

describe('L7 HTTP/1.1 framing against a lenient origin (request path)', () => {
  for (const c of cases) {
    it(`${c.rejected === undefined ? 'frames' : `rejects (${c.rejected})`} ${c.name} exactly as the origin does`, async () => {
      const before = origin.requests.length;
      const bytesBefore = origin.allReceived().length;
      const { text, closed } = await rawExchange(h.port, c.bytes, { untilClose: c.rejected !== undefined, idleMs: c.rejected === undefined ? 400 : 3000 });
      const framed = origin.requests.length - before;
      const seen = origin.allReceived().slice(bytesBefore);
      expect(framed).toBe(c.framed);
      expect(count(text, 'x-origin-seq:')).toBe(framed);
      if (c.rejected !== undefined) {
        expect(text).toMatch(new RegExp(`^HTTP/1\\.1 ${c.rejected} `));
        expect(text).toContain('connection: close');
        expect(closed).toBe(true);
        expect(seen).toBe('');
      } else {
        // The only way a request-looking body reaches the origin is as the body of the request that carried it.
        for (const r of origin.requests.slice(before)) expect(r.target).not.toBe('/smuggled');
      }
    });
  }

  it('forwards a chunked body without its trailer fields (RFC 9112 §7.1.2: discarded, never merged)', async () => {
    const before = origin.requests.length;
    const bytesBefore = origin.allReceived().length;
    await rawExchange(h.port, `${POST_CHUNKED}5\r\nhello\r\n0\r\nx-user: admin\r\n\r\n`);
    expect(origin.requests.length).toBe(before + 1);
    const seen = origin.allReceived().slice(bytesBefore);
    expect(seen).not.toContain('x-user');
    expect(seen.endsWith('5\r\nhello\r\n0\r\n\r\n')).toBe(true);
  });

  it('answers a pipelined valid request, then rejects a bad chunked one, and nothing after it reaches the origin', async () => {
    const before = origin.requests.length;
    const bytesBefore = origin.allReceived().length;
    const { text, closed } = await rawExchange(h.port, `GET /first HTTP/1.1\r\nhost: web\r\n\r\n${POST_CHUNKED}5\r\nhello\r\n0\r\n\n${SMUGGLED}`, { untilClose: true, idleMs: 3000 });
    expect(origin.requests.length - before).toBe(1);
    expect(count(text, 'x-origin-seq:')).toBe(1);
    expect(text).toMatch(/GET \/first[\s\S]*HTTP\/1\.1 400 [\s\S]*connection: close/);
    expect(closed).toBe(true);
    expect(origin.allReceived().slice(bytesBefore)).not.toContain('/smuggled');
  });

  it('drops a bad chunked body sent in pieces after its head was forwarded, and reads nothing after it', async () => {
    const before = origin.requests.length;
    const bytesBefore = origin.allReceived().length;
    const socket = net.connect(h.port, '127.0.0.1');
    let text = '';
    socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
    const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
    socket.write(`${POST_CHUNKED}5\r\nhello\r\n`);
    // Let weft connect upstream and forward the head and the first chunk.
    for (let i = 0; i < 100 && origin.allReceived().length - bytesBefore < POST_CHUNKED.length + 10; i++) await new Promise((r) => setTimeout(r, 10));
    socket.write(`0\r\n\n${SMUGGLED}`);
    await closed;
    expect(origin.requests.length - before).toBe(0);
    expect(count(text, 'x-origin-seq:')).toBe(0);
    expect(origin.allReceived().slice(bytesBefore)).not.toContain('/smuggled');
  });

  it('absolute-form: the forwarded Host is the target authority, and hosts rules see the same one', async () => {
    const before = origin.requests.length;
    const ok = await rawExchange(h.port, 'GET http://web.example/abs?q=1 HTTP/1.1\r\nhost: admin.example\r\n\r\n');
    expect(ok.text).toMatch(/^HTTP\/1\.1 200 /);
    const seen = origin.requests[before]!;
    expect(seen.target).toBe('/abs?q=1');
    expect(seen.headers.filter(([n]) => n === 'host')).toEqual([['host', 'web.example']]);

    const denied = await rawExchange(h.port, 'GET http://admin.example/ HTTP/1.1\r\nhost: web.example\r\n\r\n');
    expect(denied.text).toMatch(/^HTTP\/1\.1 403 /);
    expect(origin.requests.length).toBe(before + 1);
  });

  it.each([
    ['userinfo in the authority', 'GET http://web.example@admin.example/ HTTP/1.1\r\nhost: web.example\r\n\r\n'],
    ['a backslash in the authority', 'GET http://admin.example\\@web.example/ HTTP/1.1\r\nhost: web.example\r\n\r\n'],
    ['an unknown scheme', 'GET ftp://web.example/ HTTP/1.1\r\nhost: web.example\r\n\r\n'],
    ['asterisk-form on GET', 'GET * HTTP/1.1\r\nhost: web.example\r\n\r\n'],
  ])('rejects an absolute-form target with %s (400) before the origin', async (_name, bytes) => {
    const bytesBefore = origin.allReceived().length;
    const { text, closed } = await rawExchange(h.port, bytes, { untilClose: true, idleMs: 3000 });
    expect(text).toMatch(/^HTTP\/1\.1 400 /);
    expect(text).toContain('connection: close');
    expect(closed).toBe(true);
    expect(origin.allReceived().slice(bytesBefore)).toBe('');
  });

  it('CONNECT to an HTTP service without a tunnelling route: 405 and nothing reaches the origin', async () => {
    const bytesBefore = origin.allReceived().length;
    const { text, closed } = await rawExchange(h.port, `CONNECT web.default:80 HTTP/1.1\r\nhost: web.default:80\r\n\r\n${SMUGGLED}`, { untilClose: true, idleMs: 3000 });
    expect(text).toMatch(/^HTTP\/1\.1 405 /);
    expect(text).toContain('connection: close');
    expect(closed).toBe(true);
    expect(origin.allReceived().slice(bytesBefore)).toBe('');
  });

  it('Upgrade: h2c is stripped: the request goes on as HTTP/1.1 without upgrade or HTTP2-Settings', async () => {
    const before = origin.requests.length;
    const { text } = await rawExchange(h.port, 'GET /h2c HTTP/1.1\r\nhost: web\r\nconnection: Upgrade, HTTP2-Settings\r\nupgrade: h2c\r\nhttp2-settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n');
    expect(text).toMatch(/^HTTP\/1\.1 200 /);
    const seen = origin.requests[before]!;
    expect(seen.target).toBe('/h2c');
    expect(seen.headers.map(([n]) => n)).not.toContain('upgrade');
    expect(seen.headers.map(([n]) => n)).not.toContain('http2-settings');
    expect(seen.headers.find(([n]) => n === 'connection')).toBeUndefined();
  });

  it('HTTP/1.2 reaches the origin as HTTP/1.1', async () => {
    const before = origin.requests.length;
    await rawExchange(h.port, 'GET /v12b HTTP/1.2\r\nhost: web\r\n\r\n');
    expect(origin.requests[before]!.version).toBe('HTTP/1.1');
  });
});

describe('an early answer (expect-based desync)', () => {
  it('an origin that refuses before reading the body: the client is told connection: close, and the body it sends next never becomes a request', async () => {
    let received = '';
    const early = net.createServer((s) => {
      s.on('error', () => undefined);
      s.on('data', (d: Buffer) => {
        const first = !received.includes('\r\n\r\n');
        received += d.toString('latin1');
        if (first && received.includes('\r\n\r\n')) s.write('HTTP/1.1 401 Unauthorized\r\ncontent-length: 2\r\n\r\nno');
      });
    });
    early.listen(0, '127.0.0.1');
    await once(early, 'listening');
    const config = makeConfig({
      workloads: [{ name: 'early-1', addresses: ['127.0.0.1'], labels: { app: 'early' } }],
      services: [{ name: 'early', addresses: ['10.96.0.21'], ports: [{ port: 80, targetPort: (early.address() as net.AddressInfo).port, appProtocol: 'http' }], selector: { app: 'early' } }],
    });
    const p = await startProxy(config, 'early.default', 80);
    try {
      const socket = net.connect(p.port, '127.0.0.1');
      let text = '';
      socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
      socket.on('error', () => undefined);
      const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
      socket.write(`POST /upload HTTP/1.1\r\nhost: early\r\nexpect: 100-continue\r\ncontent-length: ${SMUGGLED.length}\r\n\r\n`);
      for (let i = 0; i < 200 && !text.includes('no'); i++) await new Promise((r) => setTimeout(r, 10));
      expect(text).toMatch(/^HTTP\/1\.1 401 Unauthorized\r\n/);
      expect(text).toContain('connection: close');
      // A client may still send the body it announced; whatever follows it must not reach the origin as a request.
      socket.write(`${SMUGGLED}${SMUGGLED}`);
      await closed;
      expect(received).not.toContain('/smuggled');
    } finally {
      await p.close();
      early.close();
    }
  });
});
