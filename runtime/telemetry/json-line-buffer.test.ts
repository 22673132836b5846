import { describe, expect, it } from 'vitest';
import { jsonKey, jsonPrefix, JsonLineBuffer } from './json-line-buffer.js';

const STRINGS = [
  '',
  '-',
  'GET',
  '/a/b?c=d&e=%20',
  'quote " inside',
  'back\\slash',
  'control \u0000\u0001\u001f and \b\f\n\r\t',
  'del \u007f and latin-1 é ÿ',
  'bmp 中文 and € sign',
  'emoji 😀 pair',
  'lone high \ud800 surrogate',
  'lone low \udc00 surrogate',
  'x'.repeat(5000),
  '中'.repeat(70_000),
];
const NUMBERS = [0, -0, 1, 9, 10, 99, 100, 200, 12345678901234, 1e15, 1e21, 0.5, 1.234, 12.345, -3, -0.001, 1e-7, NaN, Infinity, -Infinity, Number.MAX_SAFE_INTEGER];

/** What the access log wrote before: a prefix and JSON.stringify of the object without its opening brace. */
function expected(prefix: string, entry: Record<string, unknown>): string {
  return prefix + JSON.stringify(entry).slice(1) + '\n';
}

function written(prefix: string, entry: Record<string, unknown>, b = new JsonLineBuffer(64)): string {
  b.begin(jsonPrefix(prefix));
  for (const [k, v] of Object.entries(entry)) {
    if (typeof v === 'number') b.number(jsonKey(k), v);
    else b.string(jsonKey(k), v as string);
  }
  b.end();
  return b.take().toString('utf8');
}

describe('JsonLineBuffer', () => {
  it('writes every string as JSON.stringify does: escapes, non-ASCII, lone surrogates, lines longer than the buffer', () => {
    for (const s of STRINGS) expect(written('{"kind":"http",', { a: s, b: s })).toBe(expected('{"kind":"http",', { a: s, b: s }));
  });

  it('writes every number as JSON.stringify does (null for NaN and the infinities)', () => {
    for (const n of NUMBERS) expect(written('{', { n, m: n })).toBe(expected('{', { n, m: n }));
  });

  it('leaves out an undefined field and writes other values as JSON would, with the commas right', () => {
    const entry = { a: undefined, b: 'x', c: undefined, d: null, e: true, f: undefined } as unknown as Record<string, unknown>;
    expect(written('{"w":1,', entry)).toBe(expected('{"w":1,', entry));
  });

  it('writes a remembered field again only for the same value not first on its line, and not from bytes a later line overwrote', () => {
    const b = new JsonLineBuffer(64);
    const keys = { p: jsonKey('p'), a: jsonKey('a', { repeats: true }), n: jsonKey('n', { repeats: true }), s: jsonKey('s', { repeats: true }) };
    const lines: Record<string, unknown>[] = [
      { p: '/', a: 'x', s: 'same' },
      { p: '/a-much-longer-path-that-moves-every-later-field', a: 'x', s: 'same' },
      { p: '/b', a: 'x', s: 'same' },
      { a: 'x', n: 1, s: 'same' },
      { a: 'x', n: 1, s: 'same' },
      { a: 'y', n: 2, s: 'same' },
      { n: 2, a: 'y', s: 'é "quoted"' },
      { n: 2, a: 'y', s: 'é "quoted"' },
      { a: 'y', n: NaN, s: 'x'.repeat(300) },
      { a: 'y', n: NaN, s: 'x'.repeat(300) },
      { a: 'y', n: -0, s: undefined },
      { a: 'y', n: 0, s: 'same' },
    ];
    let out = '';
    let want = '';
    for (const line of lines) {
      // Each line after a take() into the same buffer: remembered bytes must not be views of what it overwrites.
      out += b.take().toString('utf8');
      b.begin(jsonPrefix('{"k":1,'));
      for (const [k, v] of Object.entries(line)) {
        const key = keys[k as keyof typeof keys];
        if (typeof v === 'number') b.number(key, v);
        else b.string(key, v as string);
      }
      b.end();
      want += expected('{"k":1,', line);
    }
    out += b.take().toString('utf8');
    expect(out).toBe(want);
  });

  it('keeps lines in order across take(), into a fresh buffer or the same one', () => {
    const b = new JsonLineBuffer(32);
    const key = jsonKey('path');
    const line = (p: string): void => {
      b.begin(jsonPrefix('{'));
      b.string(key, p);
      b.end();
    };
    line('/1');
    line('/2');
    expect(b.take(Buffer.alloc(16)).toString()).toBe('{"path":"/1"}\n{"path":"/2"}\n');
    line('/3');
    expect(b.take().toString()).toBe('{"path":"/3"}\n');
    expect(b.length).toBe(0);
  });
});
