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
    ['bare LF ending the trailer section', '0\r\n\nGET / HTTP/1.1\r\nhost: x\r\n\r\n'],
    ['bare LF after a trailer field', '0\r\nx: a\n\r\n'],
    ['bare CR in a trailer field', '0\r\nx: a\rb\r\n\r\n'],
    ['trailer line without a colon', '0\r\nGET / HTTP/1.1\r\n\r\n'],
    ['trailer name with a space before the colon', '0\r\nx : a\r\n\r\n'],
    ['control byte starting a trailer line', '0\r\n\u0001x: a\r\n\r\n'],
    ['bare LF ending an extension', '5;a=b\nhello\r\n0\r\n\r\n'],
    ['bare CR in an extension', '5;a\rb\r\nhello\r\n0\r\n\r\n'],
    ['extension without a name', '5;=b\r\nhello\r\n0\r\n\r\n'],
    ['extension value with a space inside a token', '5;a=b c\r\nhello\r\n0\r\n\r\n'],
    ['unterminated quoted extension value', '5;a="b\r\nhello\r\n0\r\n\r\n'],
    ['text after the size', '5x\r\nhello\r\n0\r\n\r\n'],
    ['bare LF after data', '5\r\nhello\n0\r\n\r\n'],
    ['a negative size', '-5\r\nhello\r\n0\r\n\r\n'],
    ['a 0x prefix', '0x5\r\nhello\r\n0\r\n\r\n'],
  ])('rejects %s', (_name, input) => {
    const r = scanAll([input]);
    expect(r.end).toBe(-2);
    expect(r.error).toBeDefined();
  });

  it.each([
    ['several extensions with BWS and quoted values', '5 ; a = b ;c="d \\" e";f\r\nhello\r\n0\r\n\r\n'],
    ['an extension on the last chunk', '5\r\nhello\r\n0;last\r\n\r\n'],
    ['upper-case hex and leading zeros', '0005\r\nhello\r\n000\r\n\r\n'],
  ])('accepts %s', (_name, input) => {
    const r = scanAll([input + 'NEXT']);
    expect(r.error).toBeUndefined();
    expect(r.decoded).toBe('hello');
    expect(r.end).toBe(input.length);
  });

  it('holds back the trailer field lines, whatever the split, so the forwarded body ends 0 CRLF CRLF', () => {
    const msg = '5\r\nhello\r\n0\r\nx-a: 1\r\nx-b: 2\r\n\r\n';
    for (let cut = 1; cut < msg.length; cut++) {
      const s = new ChunkedScanner();
      let forwarded = '';
      for (const part of [msg.slice(0, cut), msg.slice(cut) + 'NEXT']) {
        const buf = Buffer.from(part, 'latin1');
        const r = s.feed(buf, 0, buf.length);
        const end = r === -1 ? buf.length : r;
        if (s.heldFrom < 0) forwarded += part.slice(0, end);
        else forwarded += part.slice(0, s.heldFrom) + part.slice(s.heldTo, end);
        if (r !== -1) break;
      }
      expect(forwarded).toBe('5\r\nhello\r\n0\r\n\r\n');
    }
  });
});
