// Response-path desync regression suite: a lenient origin answers with malformed framing (bad chunking, CL and TE together, a lone LF in the trailer section, overruns) and weft must answer 502 or cut the client, and never hand that pooled upstream connection — or the bytes it carried — to the next request.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeConfig, rawExchange, startProxy, type ProxyHarness } from './l7-harness.js';
import { echoAnswer, startLenientOrigin, type LenientOrigin } from '../helpers/lenient-origin.js';

/** A complete response the origin appends after a malformed one: whoever reads it as the next answer desynced. */
const SMUGGLED = 'HTTP/1.1 200 OK\r\ncontent-length: 8\r\nx-smuggled: 1\r\n\r\nSMUGGLED';

const bad: Record<string, string | string[]> = {
  '/bad-chunk-size': `HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n${SMUGGLED}`,
  '/lone-lf-chunk-size': `HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n${SMUGGLED}`,
  '/bad-chunk-ext': `HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;a\nhello\r\n0\r\n\r\n${SMUGGLED}`,
  '/missing-data-crlf': `HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhelloX\r\n0\r\n\r\n${SMUGGLED}`,
  '/cl-and-te': `HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n${SMUGGLED}`,
  '/lone-lf-trailer': `HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\n${SMUGGLED}`,
  '/trailer-not-a-field': `HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n${SMUGGLED}`,
  '/te-gzip': `HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n0\r\n\r\n${SMUGGLED}`,
  '/two-lengths': `HTTP/1.1 200 OK\r\ncontent-length: 0\r\ncontent-length: 66\r\n\r\n${SMUGGLED}`,
  '/lone-lf-head': `HTTP/1.1 200 OK\r\ncontent-length: 0\nx-a: 1\r\n\r\n${SMUGGLED}`,
  '/obs-fold-head': `HTTP/1.1 200 OK\r\nx-a: 1\r\n content-length: 0\r\ncontent-length: 0\r\n\r\n${SMUGGLED}`,
  '/bad-status-line': `HTTP/1.1 2000 OK\r\ncontent-length: 0\r\n\r\n${SMUGGLED}`,
};

/** Responses whose head goes out before the body breaks: the client is cut, the upstream dropped. */
const badLate: Record<string, string[]> = {
  '/late-bad-chunk': ['HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n', `zz\r\n${SMUGGLED}`],
  '/late-lone-lf-trailer': ['HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n', `0\r\n\n${SMUGGLED}`],
};

/** Well framed, but bytes follow the body: answered, and the connection is not reused. */
const overrun: Record<string, string> = {
  '/overrun-length': `HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok${SMUGGLED}`,
  '/overrun-204': `HTTP/1.1 204 No Content\r\n\r\n${SMUGGLED}`,
  '/overrun-chunked': `HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n${SMUGGLED}`,
};

let origin: LenientOrigin;
let h: ProxyHarness;

beforeAll(async () => {
  origin = await startLenientOrigin((req, index) => bad[req.target] ?? badLate[req.target] ?? overrun[req.target] ?? trailers[req.target] ?? echoAnswer(req, index));
  const config = makeConfig({
    workloads: [{ name: 'web-1', addresses: ['127.0.0.1'], labels: { app: 'web' } }],
    services: [{ name: 'web', addresses: ['10.96.0.20'], ports: [{ port: 80, targetPort: origin.port, appProtocol: 'http' }], selector: { app: 'web' } }],
  });
  h = await startProxy(config, 'web.default', 80);
});

afterAll(async () => {
  await h.close();
  await origin.close();
});

const trailers: Record<string, string> = {
  '/with-trailers': 'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-t\r\n\r\n5\r\nhello\r\n0\r\nx-t: 1\r\nset-cookie: a=b\r\n\r\n',
  '/http12': 'HTTP/1.2 200 OK\r\ncontent-length: 2\r\n\r\nok',
};

/** The origin connection that carried the latest request for `target`. */
function connectionOf(target: string): number {
  const r = origin.requests.filter((q) => q.target === target).at(-1);
  if (r === undefined) throw new Error(`origin never saw ${target}`);
  return r.connection;
}

/** Sends GET `next` on a new client connection and checks it got its own answer on an upstream connection other than `avoid`'s. */
async function expectCleanNext(avoid: string, next: string): Promise<void> {
  const { text } = await rawExchange(h.port, `GET ${next} HTTP/1.1\r\nhost: web\r\n\r\n`);
  expect(text).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
  expect(text.endsWith(`GET ${next}`)).toBe(true);
  expect(text).not.toContain('SMUGGLED');
  expect(connectionOf(next)).not.toBe(connectionOf(avoid));
}

describe('L7 HTTP/1.1 framing against a lenient origin (response path)', () => {
  for (const target of Object.keys(bad)) {
    it(`answers 502 to ${target.slice(1)} and never reuses that upstream connection`, async () => {
      const { text, closed } = await rawExchange(h.port, `GET ${target} HTTP/1.1\r\nhost: web\r\n\r\n`, { idleMs: 500 });
      expect(text).toMatch(/^HTTP\/1\.1 502 /);
      expect(text).toContain('x-weft-error: WEFT_ERR_UPSTREAM_PROTOCOL');
      expect(text).not.toContain('SMUGGLED');
      expect(closed).toBe(false);
      await expectCleanNext(target, `${target}-next`);
    });
  }

  for (const target of Object.keys(badLate)) {
    it(`cuts the client when ${target.slice(1)} breaks after its head went out, and drops the upstream connection`, async () => {
      const { text, closed } = await rawExchange(h.port, `GET ${target} HTTP/1.1\r\nhost: web\r\n\r\n`, { untilClose: true, idleMs: 3000 });
      expect(text).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
      expect(text).not.toContain('SMUGGLED');
      expect(closed).toBe(true);
      await expectCleanNext(target, `${target}-next`);
    });
  }

  for (const target of Object.keys(overrun)) {
    it(`answers ${target.slice(1)} and does not reuse the connection that sent bytes past the body`, async () => {
      const { text } = await rawExchange(h.port, `GET ${target} HTTP/1.1\r\nhost: web\r\n\r\n`, { idleMs: 500 });
      expect(text).toMatch(/^HTTP\/1\.1 20[04] /);
      expect(text).not.toContain('SMUGGLED');
      await expectCleanNext(target, `${target}-next`);
    });
  }

  it('answers HEAD without a body even when the origin sends one, and drops that connection', async () => {
    const { text } = await rawExchange(h.port, 'HEAD /overrun-length HTTP/1.1\r\nhost: web\r\n\r\n', { idleMs: 500 });
    expect(text).toBe('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n');
    await expectCleanNext('/overrun-length', '/after-head');
  });

  it('strips response trailer fields, keeps the chunked body, and reuses the connection', async () => {
    const { text } = await rawExchange(h.port, 'GET /with-trailers HTTP/1.1\r\nhost: web\r\n\r\n');
    expect(text.endsWith('5\r\nhello\r\n0\r\n\r\n')).toBe(true);
    expect(text).not.toContain('x-t: 1');
    expect(text).not.toContain('set-cookie');
    await rawExchange(h.port, 'GET /after-trailers HTTP/1.1\r\nhost: web\r\n\r\n');
    expect(connectionOf('/after-trailers')).toBe(connectionOf('/with-trailers'));
  });

  it('reads an HTTP/1.2 response as HTTP/1.1', async () => {
    const { text } = await rawExchange(h.port, 'GET /http12 HTTP/1.1\r\nhost: web\r\n\r\n');
    expect(text).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(text.endsWith('ok')).toBe(true);
  });

  it('decodes a chunked answer for an HTTP/1.0 client without its trailers', async () => {
    const { text, closed } = await rawExchange(h.port, 'GET /with-trailers HTTP/1.0\r\n\r\n', { untilClose: true, idleMs: 3000 });
    expect(text).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(text.endsWith('\r\n\r\nhello')).toBe(true);
    expect(closed).toBe(true);
  });
});
