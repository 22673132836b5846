// Splicing filters' removals and replacements into a forwarded head's own bytes: exact bytes for each kind of edit, the
// fields the writers re-create left to the re-serialization, and the parser's fields matching the head's lines one to
// one for every kind of head it accepts (re-parsing a spliced head gives exactly the edited list).
import { describe, expect, it } from 'vitest';
import { HeaderList } from './header-list.js';
import { HeadParseError, parseRequestHead, parseResponseHead, type RequestHead } from './http1-head-parser.js';
import { splicedHead } from './http1-head-splice.js';
import { appendedFieldLines, extendedVerbatimHead } from './http1-head-writer.js';
import { prng } from '../../test/helpers/prng.js';

const LIMITS = { maxHeadBytes: 64 * 1024, maxHeaders: 100 };

function parse(text: string): { raw: Buffer; headers: HeaderList } {
  const b = Buffer.from(text, 'latin1');
  const h = parseRequestHead(b, 0, b.length, LIMITS) as RequestHead;
  expect(h.verbatim, 'a head the splice may work on').toBeDefined();
  return { raw: h.verbatim!, headers: new HeaderList(h.headers) };
}

/** The head as the router writes it: spliced, then the added fields' lines before the blank line. */
function forwarded(raw: Buffer, headers: HeaderList): string | undefined {
  const spliced = splicedHead(raw, headers, true);
  if (spliced === undefined) return undefined;
  const lines = appendedFieldLines(headers, true, headers.addedFrom);
  return lines === undefined ? undefined : extendedVerbatimHead(spliced, lines).toString('latin1');
}

const HEAD = 'GET /a?b=1 HTTP/1.1\r\nUser-Agent: curl/8\r\nHost: svc\r\nAccept: */*\r\nX-Internal: secret\r\nAuthorization: Bearer t\r\n\r\n';

describe('splicedHead', () => {
  it('forwards the head itself when no original field was removed or replaced', () => {
    const { raw, headers } = parse(HEAD);
    headers.add('x-new', '1');
    expect(splicedHead(raw, headers, true)).toBe(raw);
    expect(forwarded(raw, headers)).toBe(HEAD.slice(0, -2) + 'x-new: 1\r\n\r\n');
  });

  it('cuts out a removed first, middle or last field line', () => {
    for (const [name, line] of [['user-agent', 'User-Agent: curl/8\r\n'], ['accept', 'Accept: */*\r\n'], ['authorization', 'Authorization: Bearer t\r\n']] as const) {
      const { raw, headers } = parse(HEAD);
      headers.remove(name);
      expect(forwarded(raw, headers), name).toBe(HEAD.replace(line, ''));
    }
  });

  it('cuts out several removed lines, adjacent or not', () => {
    const { raw, headers } = parse(HEAD);
    headers.remove('x-internal');
    headers.remove('user-agent');
    headers.remove('authorization');
    expect(forwarded(raw, headers)).toBe('GET /a?b=1 HTTP/1.1\r\nHost: svc\r\nAccept: */*\r\n\r\n');
  });

  it('rewrites a replaced field in place, keeping its position and its name as the client spelled it', () => {
    const { raw, headers } = parse(HEAD);
    headers.set('accept', 'text/html');
    headers.set('x-internal', '');
    expect(forwarded(raw, headers)).toBe('GET /a?b=1 HTTP/1.1\r\nUser-Agent: curl/8\r\nHost: svc\r\nAccept: text/html\r\nX-Internal: \r\nAuthorization: Bearer t\r\n\r\n');
  });

  it('combines a removal, a replacement and appended fields (jwt-authn, header-rewrite)', () => {
    const { raw, headers } = parse('GET / HTTP/1.1\r\nHost: api\r\nx-user: mallory\r\nauthorization: Bearer abc.def.ghi\r\naccept: */*\r\n\r\n');
    headers.remove('authorization');
    headers.set('x-user', 'alice');
    headers.add('x-jwt-sub', 'alice');
    expect(forwarded(raw, headers)).toBe('GET / HTTP/1.1\r\nHost: api\r\nx-user: alice\r\naccept: */*\r\nx-jwt-sub: alice\r\n\r\n');
  });

  it('handles duplicate names: a set replaces the first line and cuts the others, a remove cuts them all', () => {
    const text = 'GET / HTTP/1.1\r\nHost: a\r\nX-Dup: 1\r\nAccept: */*\r\nx-dup: 2\r\nX-DUP: 3\r\n\r\n';
    const set = parse(text);
    set.headers.set('x-dup', 'one');
    expect(forwarded(set.raw, set.headers)).toBe('GET / HTTP/1.1\r\nHost: a\r\nX-Dup: one\r\nAccept: */*\r\n\r\n');
    const removed = parse(text);
    removed.headers.remove('X-Dup');
    expect(forwarded(removed.raw, removed.headers)).toBe('GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n');
  });

  it('finds mixed-case names and lines with odd whitespace around their values', () => {
    const text = 'GET / HTTP/1.1\r\nHOST: a\r\nx-Odd:\t  spaced \t \r\nX-EMPTY:\r\nCoOkIe:  a=1;  b=2  \r\nAccept: */*\r\n\r\n';
    const { raw, headers } = parse(text);
    expect(headers.flat).toEqual(['host', 'a', 'x-odd', 'spaced', 'x-empty', '', 'cookie', 'a=1;  b=2', 'accept', '*/*']);
    headers.remove('x-odd');
    headers.set('cookie', 'c=3');
    headers.remove('x-empty');
    expect(forwarded(raw, headers)).toBe('GET / HTTP/1.1\r\nHOST: a\r\nCoOkIe: c=3\r\nAccept: */*\r\n\r\n');
  });

  it('keeps obs-text bytes of the lines it copies', () => {
    const text = 'GET / HTTP/1.1\r\nHost: a\r\nX-Latin: caf\xe9 \xff\r\nX-Gone: 1\r\n\r\n';
    const { raw, headers } = parse(text);
    headers.remove('x-gone');
    headers.set('x-new', 'na\xefve');
    expect(forwarded(raw, headers)).toBe('GET / HTTP/1.1\r\nHost: a\r\nX-Latin: caf\xe9 \xff\r\nx-new: na\xefve\r\n\r\n');
  });

  it('leaves a head whose edited field the writers re-create to the re-serialization', () => {
    const text = 'POST / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\nContent-Length: 2\r\nX-A: 1\r\n\r\n';
    for (const edit of [
      (h: HeaderList) => h.remove('content-length'),
      (h: HeaderList) => h.set('content-length', '5'),
      (h: HeaderList) => h.set('connection', 'close'),
      (h: HeaderList) => h.remove('connection'),
      (h: HeaderList) => h.remove('host'),
      (h: HeaderList) => h.set('host', 'b'),
    ]) {
      const { raw, headers } = parse(text);
      edit(headers);
      expect(splicedHead(raw, headers, true)).toBeUndefined();
    }
    // An added framing or hop-by-hop field is the writer's to refuse, after a splice as before.
    const { raw, headers } = parse(text);
    headers.remove('x-a');
    headers.add('transfer-encoding', 'chunked');
    expect(splicedHead(raw, headers, true)).toBeDefined();
    expect(forwarded(raw, headers)).toBeUndefined();
  });

  it('keeps the lines the writers would re-create when only other fields were edited (keep-alive, content-length)', () => {
    const { raw, headers } = parse('POST / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\nX-Gone: 1\r\nContent-Length: 2\r\nX-Set: 1\r\n\r\n');
    headers.remove('x-gone');
    headers.set('x-set', '2');
    expect(forwarded(raw, headers)).toBe('POST / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\nContent-Length: 2\r\nX-Set: 2\r\n\r\n');
  });

  it('splices a response head the same way, host and traceparent being ordinary fields there', () => {
    const b = Buffer.from('HTTP/1.1 200 OK\r\nServer: origin\r\nTraceparent: x\r\nContent-Length: 2\r\n\r\n', 'latin1');
    const res = parseResponseHead(b, 0, b.length, LIMITS);
    if (res instanceof HeadParseError) throw new Error(res.reason);
    const headers = new HeaderList(res.headers);
    headers.remove('server');
    headers.set('traceparent', 'y');
    expect(splicedHead(res.verbatim!, headers, false)?.toString('latin1')).toBe('HTTP/1.1 200 OK\r\nTraceparent: y\r\nContent-Length: 2\r\n\r\n');
  });

  it('writes a head anew rather than guess when its lines and the list disagree', () => {
    const { raw } = parse('GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n\r\n');
    const longer = new HeaderList(['host', 'a', 'x-a', '1', 'x-b', '2']);
    longer.remove('x-b');
    expect(splicedHead(raw, longer, true)).toBeUndefined();
  });
});

describe('the parser and the head lines agree for every head it accepts', () => {
  it('re-parsing a spliced head gives exactly the edited list (random heads and edits)', () => {
    const names = ['X-A', 'x-a', 'Accept', 'COOKIE', 'x-b', 'User-Agent', 'x-forwarded-for', 'X-Long-Name-Field', 'x-c', 'Origin', 'Authorization', "x-t!#$%&'*+.^_`|~"];
    const values = ['', 'v', ' v ', '\tv\t', 'a, b', 'caf\xe9', '  ', 'a b  c', '"q"', '*/*'];
    const next = prng(15);
    const pick = <T>(a: readonly T[]): T => a[Math.floor(next() * a.length)]!;
    let spliced = 0;
    for (let round = 0; round < 2000; round++) {
      const lines = ['Host: svc'];
      const count = Math.floor(next() * 8);
      for (let i = 0; i < count; i++) lines.splice(Math.floor(next() * (lines.length + 1)), 0, `${pick(names)}:${pick(['', ' ', '\t', '  '])}${pick(values)}`);
      const text = `GET /p HTTP/1.1\r\n${lines.join('\r\n')}\r\n\r\n`;
      const { raw, headers } = parse(text);
      expect(headers.size).toBe(lines.length);
      const edits = 1 + Math.floor(next() * 4);
      for (let e = 0; e < edits; e++) {
        const name = pick(names).toLowerCase();
        const r = next();
        if (r < 0.4) headers.remove(name);
        else if (r < 0.7) headers.set(name, pick(values).trim());
        else if (r < 0.85) headers.add(name, pick(values).trim());
        else {
          // A plugin's whole-map write-back: a shuffled-at-the-tail subset of the fields, one value changed.
          const pairs = headers.pairs().filter(() => next() < 0.8);
          if (pairs.length > 1 && next() < 0.5) pairs.push(pairs.splice(Math.floor(next() * pairs.length), 1)[0]!);
          if (pairs.length > 0 && next() < 0.5) pairs[Math.floor(next() * pairs.length)]![1] = 'changed';
          headers.replaceAll(pairs);
        }
      }
      const out = forwarded(raw, headers);
      if (out === undefined) continue;
      spliced++;
      const b = Buffer.from(out, 'latin1');
      const again = parseRequestHead(b, 0, b.length, LIMITS) as RequestHead;
      expect(again.headers, JSON.stringify(text)).toEqual(headers.flat);
    }
    // Only an edit of host leaves the splice; most rounds go through it.
    expect(spliced).toBeGreaterThan(1000);
  });
});
