// Unit tests of the chunked-coding scanner: framing across arbitrary splits, extensions, trailers, decoding, and rejection of malformed input.
import { describe, expect, it } from 'vitest';
import { ChunkedScanner } from './chunked-scanner.js';

function scanAll(parts: string[]): { end: number; decoded: string; error: string | undefined; consumedIn: number } {
  const s = new ChunkedScanner();
  let decoded = '';
  for (let i = 0; i < parts.length; i++) {
    const buf = Buffer.from(parts[i]!, 'latin1');
    const r = s.feed(buf, 0, buf.length, (d) => (decoded += d.toString('latin1')));
    if (r !== -1) return { end: r, decoded, error: s.error, consumedIn: i };
  }
  return { end: -1, decoded, error: s.error, consumedIn: -1 };
}

describe('ChunkedScanner', () => {
  const body = '5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nx-trailer: t\r\n\r\n';

  it('finds the end and decodes, whatever the split', () => {
    for (let cut = 1; cut < body.length; cut++) {
      const r = scanAll([body.slice(0, cut), body.slice(cut) + 'NEXT']);
      expect(r.decoded).toBe('hello world');
      expect(r.error).toBeUndefined();
      expect(r.end).toBe(cut < body.length ? body.length - cut : -1);
    }
  });

  it('stops exactly at the end of the message when more bytes follow', () => {
    const r = scanAll([body + 'GET / HTTP/1.1\r\n']);
    expect(r.end).toBe(body.length);
  });

  it.each([
    ['non-hex size', 'zz\r\nhello\r\n0\r\n\r\n'],
    ['missing CRLF after data', '5\r\nhelloX\r\n0\r\n\r\n'],
    ['bare LF after size', '5\nhello\r\n0\r\n\r\n'],
    ['oversized chunk size', 'fffffffffffff\r\n'],
    ['control character in extension', '5;\u0001\r\nhello\r\n0\r\n\r\n'],
    ['obs-fold in trailer', '0\r\nx: a\r\n b\r\n\r\n'],
  ])('rejects %s', (_name, input) => {
    const r = scanAll([input]);
    expect(r.end).toBe(-2);
    expect(r.error).toBeDefined();
  });
});
