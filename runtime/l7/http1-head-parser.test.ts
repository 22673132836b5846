// Unit tests of the strict HTTP/1.x head parser: framing facts, connection semantics, and the exact rejection per malformed head.
import { describe, expect, it } from 'vitest';
import { findHeadEnd, HeadParseError, parseRequestHead, parseResponseHead, type RequestHead } from './http1-head-parser.js';

const limits = { maxHeadBytes: 8192, maxHeaders: 50 };

function req(text: string) {
  const buf = Buffer.from(text, 'latin1');
  const end = findHeadEnd(buf, 0, limits);
  if (typeof end !== 'number' || end === 0) return end;
  return parseRequestHead(buf, 0, end, limits);
}

describe('parseRequestHead', () => {
  it('parses method, target, lower-cased names, trimmed values and framing', () => {
    const h = req('POST /a?b=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nX-Mixed:  spaced value \t\r\n\r\n');
    expect(h).not.toBeInstanceOf(HeadParseError);
    if (h instanceof HeadParseError || typeof h === 'number') return;
    expect(h.method).toBe('POST');
    expect(h.target).toBe('/a?b=1');
    expect(h.headers).toEqual(['host', 'x', 'content-length', '5', 'x-mixed', 'spaced value']);
    expect(h.contentLength).toBe(5);
    expect(h.close).toBe(false);
  });

  it('knows HTTP/1.0 keep-alive, Connection: close, upgrades and nominated hop-by-hop headers', () => {
    const old = req('GET / HTTP/1.0\r\n\r\n');
    const oldKa = req('GET / HTTP/1.0\r\nconnection: keep-alive\r\n\r\n');
    const close = req('GET / HTTP/1.1\r\nhost: x\r\nconnection: close, x-secret\r\n\r\n');
    const up = req('GET / HTTP/1.1\r\nhost: x\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\r\n');
    expect((old as { close: boolean }).close).toBe(true);
    expect((oldKa as { close: boolean }).close).toBe(false);
    expect((close as { close: boolean; connectionTokens: string[] }).connectionTokens).toEqual(['x-secret']);
    expect((up as { upgrade: boolean }).upgrade).toBe(true);
  });

  it('reads a one-token Connection value in any case and a list alike', () => {
    for (const [value, close, keepAlive10, verbatim, tokens] of [
      ['keep-alive', false, true, true, undefined],
      ['Keep-Alive', false, true, true, undefined],
      ['close', true, false, false, undefined],
      ['CLOSE', true, false, false, undefined],
      ['closer', false, false, false, ['closer']],
      ['keep-alive, x-a', false, true, false, ['x-a']],
      ['close ,keep-alive', true, true, false, undefined],
    ] as const) {
      const h11 = req(`GET / HTTP/1.1\r\nhost: x\r\nconnection: ${value}\r\n\r\n`) as RequestHead;
      const h10 = req(`GET / HTTP/1.0\r\nconnection: ${value}\r\n\r\n`) as RequestHead;
      expect(h11.close, value).toBe(close);
      expect(h11.verbatim !== undefined, value).toBe(verbatim);
      expect(h11.connectionTokens, value).toEqual(tokens);
      // HTTP/1.0 stays open only with keep-alive and without close.
      expect(h10.close, value).toBe(close || !keepAlive10);
    }
  });

  it('waits for more bytes on an incomplete head and refuses one that cannot fit', () => {
    expect(req('GET / HTTP/1.1\r\nhost: x\r\n')).toBe(0);
    const big = req(`GET / HTTP/1.1\r\nx: ${'a'.repeat(9000)}`);
    expect(big).toBeInstanceOf(HeadParseError);
    expect((big as HeadParseError).status).toBe(431);
  });

  it.each([
    ['lower-case-less method with a space inside', 'G ET / HTTP/1.1\r\nhost: x\r\n\r\n', 400],
    ['relative target', 'GET a HTTP/1.1\r\nhost: x\r\n\r\n', 400],
    ['HTTP/2.1', 'GET / HTTP/2.1\r\nhost: x\r\n\r\n', 505],
    ['transfer coding before chunked', 'POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: gzip, chunked\r\n\r\n', 501],
    ['transfer coding split over two lines', 'POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: gzip\r\ntransfer-encoding: chunked\r\n\r\n', 501],
    ['chunked not last', 'POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked, gzip\r\n\r\n', 400],
    ['unknown coding alone', 'POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: xchunked\r\n\r\n', 400],
    ['chunked twice', 'POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked, chunked\r\n\r\n', 400],
    ['content-length with a sign', 'GET / HTTP/1.1\r\nhost: x\r\ncontent-length: +5\r\n\r\n', 400],
    ['content-length list', 'GET / HTTP/1.1\r\nhost: x\r\ncontent-length: 5, 5\r\n\r\n', 400],
    ['TE chunked on HTTP/1.0', 'POST / HTTP/1.0\r\ntransfer-encoding: chunked\r\n\r\n', 400],
    ['empty header name', 'GET / HTTP/1.1\r\nhost: x\r\n: v\r\n\r\n', 400],
    ['DEL in value', 'GET / HTTP/1.1\r\nhost: x\r\nx: a\u007fb\r\n\r\n', 400],
  ])('rejects %s', (_n, text, status) => {
    const h = req(text);
    expect(h).toBeInstanceOf(HeadParseError);
    expect((h as HeadParseError).status).toBe(status);
  });
});

describe('parseRequestHead versions and upgrades', () => {
  it('reads HTTP/1.2 (and any later 1.x) as HTTP/1.1 and never forwards such a head verbatim', () => {
    const h = req('GET / HTTP/1.2\r\nhost: x\r\n\r\n');
    expect(h).not.toBeInstanceOf(HeadParseError);
    expect((h as RequestHead).minor).toBe(1);
    expect((h as RequestHead).verbatim).toBeUndefined();
  });

  it('does not treat an h2c offer, or any upgrade on HTTP/1.0, as an upgrade', () => {
    const h2c = req('GET / HTTP/1.1\r\nhost: x\r\nconnection: Upgrade, HTTP2-Settings\r\nupgrade: h2c\r\nhttp2-settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n') as RequestHead;
    expect(h2c.upgrade).toBe(false);
    const ws = req('GET / HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n') as RequestHead;
    expect(ws.upgrade).toBe(true);
    const old = req('GET / HTTP/1.0\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n') as RequestHead;
    expect(old.upgrade).toBe(false);
  });
});

describe('parseResponseHead', () => {
  it('parses status, reason and framing, and rejects a malformed status line as 502', () => {
    const ok = Buffer.from('HTTP/1.1 204 No Content\r\nx-a: 1\r\n\r\n');
    const r = parseResponseHead(ok, 0, ok.length, limits);
    expect(r).toMatchObject({ status: 204, reason: 'No Content', headers: ['x-a', '1'] });
    for (const bad of ['HTTP/1.1 2000 OK\r\n\r\n', 'HTTP/1.1 20 OK\r\n\r\n', 'HTTP/2 200 OK\r\n\r\n', 'HTTP/1.1 200 OK\r\nx : 1\r\n\r\n']) {
      const b = Buffer.from(bad);
      const res = parseResponseHead(b, 0, b.length, limits);
      expect(res).toBeInstanceOf(HeadParseError);
      expect((res as HeadParseError).status).toBe(502);
    }
  });
});

describe('field names', () => {
  it('lower-cases common and uncommon names alike, in any case mix', () => {
    const h = req('GET / HTTP/1.1\r\nHOST: x\r\nuser-AGENT: u\r\nContent-Type: t\r\nX-Custom-Thing: c\r\nTE: trailers\r\nHosT2: y\r\n\r\n');
    if (h instanceof HeadParseError || typeof h === 'number') throw new Error('expected a head');
    expect(h.headers).toEqual(['host', 'x', 'user-agent', 'u', 'content-type', 't', 'x-custom-thing', 'c', 'te', 'trailers', 'host2', 'y']);
    expect(h.host).toBe('x');
  });

  it('does not mistake a name of the same length for a common one', () => {
    const h = req('GET / HTTP/1.1\r\nhost: x\r\nhosu: 1\r\nx-request-ie: 2\r\n\r\n');
    if (h instanceof HeadParseError || typeof h === 'number') throw new Error('expected a head');
    expect(h.headers).toEqual(['host', 'x', 'hosu', '1', 'x-request-ie', '2']);
  });

  it('does not mistake a name whose first byte only shares a common name\'s low bits for it', () => {
    // '!' (0x21) and 'A'/'a' agree in their low five bits, as '(' and 'H'/'h' do not (not a tchar); 'TE' and '~e' likewise.
    const h = req('GET / HTTP/1.1\r\nHost: x\r\n!ccept: 1\r\nAccept: 2\r\n4e: 3\r\nTe: 4\r\n\r\n');
    if (h instanceof HeadParseError || typeof h === 'number') throw new Error('expected a head');
    expect(h.headers).toEqual(['host', 'x', '!ccept', '1', 'accept', '2', '4e', '3', 'te', '4']);
    // Only the real `te` makes the head one to write anew.
    expect(h.verbatim).toBeUndefined();
    const plain = req('GET / HTTP/1.1\r\nHost: x\r\n4e: 3\r\n\r\n');
    if (plain instanceof HeadParseError || typeof plain === 'number') throw new Error('expected a head');
    expect(plain.verbatim).toBeDefined();
  });
});

describe('verbatim heads', () => {
  function res(text: string) {
    const buf = Buffer.from(text, 'latin1');
    const end = findHeadEnd(buf, 0, limits);
    if (typeof end !== 'number' || end === 0) throw new Error('incomplete');
    return parseResponseHead(buf, 0, end, limits);
  }
  const verbatim = (h: unknown): string | undefined => {
    if (h instanceof HeadParseError || typeof h === 'number' || h === undefined) throw new Error('not parsed');
    return (h as { verbatim: Buffer | undefined }).verbatim?.toString('latin1');
  };

  it('keeps the bytes of a head that needs nothing dropped or re-created, names in their own case', () => {
    const r = 'GET /x HTTP/1.1\r\nHost: a\r\nX-Thing: 1\r\nContent-Length: 0\r\n\r\n';
    expect(verbatim(req(r))).toBe(r);
    const s = 'HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-Served: Y\r\n\r\n';
    expect(verbatim(res(s + 'abc'))).toBe(s);
  });

  it('has none when a field must be dropped or re-created, or for HTTP/1.0 and absolute-form targets', () => {
    for (const field of ['Connection: close', 'Connection: keep-alive, x-a', 'Keep-Alive: timeout=5', 'TE: trailers', 'Upgrade: h2c', 'Proxy-Connection: close', 'Content-Length: 0', 'traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01']) {
      expect(verbatim(req(`GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n${field}\r\n\r\n`))).toBeUndefined();
    }
    expect(verbatim(req('POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n'))).toBeUndefined();
    expect(verbatim(req('GET / HTTP/1.0\r\nHost: a\r\n\r\n'))).toBeUndefined();
    expect(verbatim(req('GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n'))).toBeUndefined();
    expect(verbatim(res('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n'))).toBeUndefined();
    expect(verbatim(res('HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n'))).toBeUndefined();
    // A connection: keep-alive line is no reason to write the head anew: the proxy keeps that hop alive too.
    const ka = 'GET / HTTP/1.1\r\nHost: a\r\nConnection: Keep-Alive\r\nAccept: */*\r\n\r\n';
    expect(verbatim(req(ka))).toBe(ka);
    // A response's traceparent is the upstream's to send; only a request's gets a new span.
    expect(verbatim(res('HTTP/1.1 200 OK\r\ntraceparent: x\r\nContent-Length: 0\r\n\r\n'))).toBeDefined();
  });
});

describe('findHeadEnd', () => {
  it('finds the first blank line wherever it falls, as a plain search would', () => {
    // Random bytes over CR, LF and a letter at every length and start: each window position is reached.
    let seed = 7;
    const next = (): number => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x80000000;
    const blank = Buffer.from('\r\n\r\n');
    for (let t = 0; t < 20_000; t++) {
      const n = 1 + Math.floor(next() * 24);
      const b = Buffer.alloc(n);
      for (let i = 0; i < n; i++) {
        const r = next();
        b[i] = r < 0.4 ? 0x0d : r < 0.8 ? 0x0a : 0x41;
      }
      const start = Math.floor(next() * n);
      const i = b.indexOf(blank, start);
      const got = findHeadEnd(b, start, { maxHeadBytes: 1 << 20, maxHeaders: 50 });
      // Without a blank line the answer is 0 or the bare-LF refusal.
      if (i === -1) expect(got === 0 || got instanceof HeadParseError).toBe(true);
      else expect(got).toBe(i + 4);
    }
  });
});
