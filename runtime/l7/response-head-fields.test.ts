// Response fields served undecoded from the received head: lookups by name read the bytes, the decoded list is the
// parser's own, and a HeaderList made on them behaves as one made from the decoded strings while decoding only when a
// caller needs more than a lookup (seeded random heads and edits, against the decoded list).
import { describe, expect, it } from 'vitest';
import { HeaderList } from './header-list.js';
import { HeadParseError, parseResponseHead, type ResponseHead } from './http1-head-parser.js';
import { ResponseHeadFields } from './response-head-fields.js';
import { prng } from '../../test/helpers/prng.js';

const LIMITS = { maxHeadBytes: 65536, maxHeaders: 100 };

/** The head parsed lazily (as the L7 path does) and its undecoded fields. */
function undecoded(text: string): { res: ResponseHead; fields: ResponseHeadFields; buf: Buffer } {
  // Behind other bytes, as a head is in a read that carried an earlier one.
  const buf = Buffer.from(`junk${text}body`, 'latin1');
  const res = parseResponseHead(buf.subarray(4), 0, text.length, LIMITS, false);
  if (res instanceof HeadParseError) throw new Error(`not parsed: ${res.reason}`);
  return { res, fields: new ResponseHeadFields(res, buf.subarray(4), 0), buf };
}

/** The parser's decoded list of the same head. */
function decodedFields(text: string): string[] {
  const res = parseResponseHead(Buffer.from(text, 'latin1'), 0, text.length, LIMITS, true);
  if (res instanceof HeadParseError) throw new Error(`not parsed: ${res.reason}`);
  return res.headers;
}

function reference(flat: readonly string[], name: string): { first: string | undefined; joined: string | undefined; count: number } {
  const values: string[] = [];
  for (let i = 0; i < flat.length; i += 2) if (flat[i] === name) values.push(flat[i + 1]!);
  return { first: values[0], joined: values.length === 0 ? undefined : values.join(', '), count: values.length };
}

const ODD = 'HTTP/1.1 200 OK\r\nServer: nginx\r\nX-Multi:  a \r\nCONTENT-type:text/plain\r\nx-multi:\tb\t\r\nEmpty:\r\nX-Obs: caf\xe9 \xff\r\nContent-Length: 2\r\n\r\n';

describe('ResponseHeadFields', () => {
  it('reads fields by name from odd spellings and whitespace, joined and counted as the decoded list would be', () => {
    const { fields } = undecoded(ODD);
    const flat = decodedFields(ODD);
    expect(fields.count).toBe(7);
    for (const name of ['server', 'x-multi', 'content-type', 'empty', 'x-obs', 'content-length', 'absent', 'x-mult', 'server ']) {
      const r = reference(flat, name);
      expect(fields.first(name), name).toBe(r.first);
      expect(fields.joined(name), name).toBe(r.joined);
      expect(fields.countOf(name), name).toBe(r.count);
    }
    expect(fields.joined('x-multi')).toBe('a, b');
    expect(fields.first('x-obs')).toBe('caf\xe9 \xff');
    // Names asked for are lower-case; a tchar that OR-ing 0x20 would fold (`^` onto `~`) is not a letter.
    expect(fields.first('Server')).toBeUndefined();
    expect(undecoded('HTTP/1.1 200 OK\r\nx^y: 1\r\n\r\n').fields.first('x~y')).toBeUndefined();
    expect(fields.decode()).toEqual(flat);
  });

  it('decodes to the parser\'s list on seeded random heads', () => {
    const pick = prng(20261208);
    const NAMES = ['Server', 'date', 'CONTENT-LENGTH', 'Set-Cookie', 'x-a', 'X-A', 'x-Long-Name_1', 'vary', 'ETag', 'grpc-status'];
    const OWS = ['', ' ', '\t', '  ', ' \t '];
    const VALUES = ['', 'v', 'a b', 'caf\xe9', '"q, r"', '1'];
    for (let round = 0; round < 500; round++) {
      let text = `HTTP/1.1 ${200 + Math.floor(pick() * 300)} ${pick() < 0.5 ? 'OK' : ''}\r\n`;
      const n = Math.floor(pick() * 8);
      let lengthSeen = false;
      for (let i = 0; i < n; i++) {
        const name = NAMES[Math.floor(pick() * NAMES.length)]!;
        const ows = (): string => OWS[Math.floor(pick() * OWS.length)]!;
        let value = VALUES[Math.floor(pick() * VALUES.length)]!;
        if (name.toLowerCase() === 'content-length') {
          if (lengthSeen) continue;
          lengthSeen = true;
          value = '0';
        }
        text += `${name}:${ows()}${value}${ows()}\r\n`;
      }
      text += '\r\n';
      const { fields } = undecoded(text);
      const flat = decodedFields(text);
      for (const name of ['server', 'set-cookie', 'x-a', 'x-long-name_1', 'content-length', 'absent']) {
        const r = reference(flat, name);
        expect(fields.first(name), text).toBe(r.first);
        expect(fields.joined(name), text).toBe(r.joined);
        expect(fields.countOf(name), text).toBe(r.count);
      }
      expect(fields.decode(), JSON.stringify(text)).toEqual(flat);
    }
  });
});

describe('HeaderList.undecoded', () => {
  it('answers lookups, takes added fields and removals of absent names without decoding', () => {
    const list = HeaderList.undecoded(undecoded(ODD).fields);
    expect(list.size).toBe(7);
    expect(list.get('x-multi')).toBe('a');
    expect(list.joined('x-multi')).toBe('a, b');
    expect(list.count('x-multi')).toBe(2);
    expect(list.has('empty')).toBe(true);
    expect(list.edited).toBe(false);
    list.add('vary', 'origin');
    list.set('x-new', '1');
    list.set('x-new', '2');
    list.add('x-multi', 'c');
    list.remove('absent');
    list.remove('vary');
    expect(list.joined('x-multi')).toBe('a, b, c');
    expect(list.size).toBe(9);
    expect(list.edited).toBe(true);
    expect(list.appendedFrom).toBe(14);
    expect(list.addedUndecoded).toEqual(['x-new', '2', 'x-multi', 'c']);
    expect(list.originalEdits).toBeUndefined();
    expect(list.decoded).toBe(false);
    // Reading the whole list decodes it, the added fields after the original ones.
    expect(list.flat).toEqual([...decodedFields(ODD), 'x-new', '2', 'x-multi', 'c']);
    expect(list.decoded).toBe(true);
    expect(list.addedUndecoded).toBeUndefined();
  });

  it('decodes for an edit of an original field, which is then recorded for the head splice', () => {
    const list = HeaderList.undecoded(undecoded(ODD).fields);
    list.add('x-multi', 'c');
    list.set('x-multi', 'one');
    expect(list.decoded).toBe(true);
    expect(list.flat).toEqual(['server', 'nginx', 'x-multi', 'one', 'content-type', 'text/plain', 'empty', '', 'x-obs', 'caf\xe9 \xff', 'content-length', '2']);
    expect([...list.originalEdits!]).toEqual([0, 2, 0, 1, 0, 0, 0]);
  });

  it('behaves as a list of the decoded strings over seeded random edits, and decodes only when it must', () => {
    const pick = prng(20261209);
    const NAMES = ['server', 'x-a', 'x-b', 'set-cookie', 'x-new', 'vary'];
    for (let round = 0; round < 800; round++) {
      let text = 'HTTP/1.1 200 OK\r\n';
      const n = Math.floor(pick() * 6);
      for (let i = 0; i < n; i++) {
        const name = NAMES[Math.floor(pick() * 4)]!;
        text += `${pick() < 0.5 ? name.toUpperCase() : name}: ${String(Math.floor(pick() * 3))}\r\n`;
      }
      text += '\r\n';
      const lazy = HeaderList.undecoded(undecoded(text).fields);
      const plain = new HeaderList(decodedFields(text));
      const original = new Set(plain.flat.filter((_, i) => i % 2 === 0));
      let mustDecode = false;
      const log: string[] = [JSON.stringify(text)];
      const ops = 1 + Math.floor(pick() * 6);
      for (let i = 0; i < ops; i++) {
        const name = NAMES[Math.floor(pick() * NAMES.length)]!;
        const value = `v${Math.floor(pick() * 3)}`;
        const op = Math.floor(pick() * 4);
        log.push(`${['add', 'set', 'remove', 'lookup'][op]} ${name} ${value}`);
        if (op === 0) {
          lazy.add(name, value);
          plain.add(name, value);
        } else if (op === 1) {
          lazy.set(name, value);
          plain.set(name, value);
          if (original.has(name)) mustDecode = true;
        } else if (op === 2) {
          lazy.remove(name);
          plain.remove(name);
          if (original.has(name)) mustDecode = true;
        }
        const where = log.join('; ');
        for (const m of NAMES) {
          expect(lazy.get(m), where).toBe(plain.get(m));
          expect(lazy.joined(m), where).toBe(plain.joined(m));
          expect(lazy.count(m), where).toBe(plain.count(m));
        }
        expect(lazy.size, where).toBe(plain.size);
        expect(lazy.edited, where).toBe(plain.edited);
        expect(lazy.appendedFrom, where).toBe(plain.appendedFrom);
        expect(lazy.addedFrom, where).toBe(plain.addedFrom);
        if (!mustDecode) expect(lazy.decoded, where).toBe(false);
      }
      const where = log.join('; ');
      expect(lazy.originalEdits === undefined ? undefined : [...lazy.originalEdits], where).toEqual(plain.originalEdits === undefined ? undefined : [...plain.originalEdits]);
      expect(lazy.flat, where).toEqual(plain.flat);
    }
  });
});
