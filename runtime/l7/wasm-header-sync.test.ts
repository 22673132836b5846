// The header lists ↔ plugin maps mapping: fields read back by name wherever pseudo-headers sit, host shown as
// :authority, appended-only edits kept as appends, request-line edits detected and validated.
import { describe, expect, it } from 'vitest';
import { HeaderList } from './header-list.js';
import { HOST, editedRequestLine, requestLineProblem, requestPairs, responsePairs, writeBackFields, type RequestLine } from './wasm-header-sync.js';
import type { HeaderPairs } from '../wasm/header-map-codec.js';

const LINE: RequestLine = { method: 'GET', path: '/a?b=1', authority: 'svc' };

describe('wasm header sync', () => {
  it('shows the request line as pseudo-headers and hides host (Envoy turns it into :authority)', () => {
    const list = new HeaderList(['host', 'svc', 'accept', '*/*']);
    expect(requestPairs(list, LINE, [])).toEqual([[':method', 'GET'], [':path', '/a?b=1'], [':authority', 'svc'], [':scheme', 'http'], ['accept', '*/*']]);
    expect(responsePairs(new HeaderList(['server', 'x']), 204, [])).toEqual([[':status', '204'], ['server', 'x']]);
  });

  it('leaves an untouched list alone and keeps appended fields as appends (the head can still leave verbatim)', () => {
    const list = new HeaderList(['host', 'svc', 'accept', '*/*']);
    const pairs = requestPairs(list, LINE, []);
    expect(writeBackFields(list, pairs, HOST)).toBe(false);
    expect(list.edited).toBe(false);
    pairs.push(['x-added', '1']);
    expect(writeBackFields(list, pairs, HOST)).toBe(true);
    expect(list.flat).toEqual(['host', 'svc', 'accept', '*/*', 'x-added', '1']);
    expect(list.appendedFrom).toBe(4);
  });

  it('reads a reordered or rebuilt map by name: pseudo-headers anywhere or absent, host kept', () => {
    const list = new HeaderList(['host', 'svc', 'accept', '*/*', 'apikey', 'k']);
    const pairs: HeaderPairs = [['x-consumer-id', 'c'], [':path', '/a?b=1'], ['accept', '*/*']];
    expect(writeBackFields(list, pairs, HOST)).toBe(true);
    expect(list.flat).toEqual(['host', 'svc', 'x-consumer-id', 'c', 'accept', '*/*']);
    expect(editedRequestLine(pairs, LINE)).toBeUndefined();
  });

  it('detects request-line edits by name; a host field stands for :authority unless :authority changed', () => {
    expect(editedRequestLine([['x', '1'], [':authority', 'canary'], [':method', 'GET']], LINE)).toEqual({ ...LINE, authority: 'canary' });
    expect(editedRequestLine([[':path', '/v2'], [':path', '/ignored']], LINE)).toEqual({ ...LINE, path: '/v2' });
    expect(editedRequestLine([['host', 'other']], LINE)).toEqual({ ...LINE, authority: 'other' });
    expect(editedRequestLine([['host', 'other'], [':authority', 'mine']], LINE)).toEqual({ ...LINE, authority: 'mine' });
  });

  it('refuses request lines that cannot be sent', () => {
    expect(requestLineProblem({ ...LINE, path: '/ok?x=1' }, LINE)).toBeUndefined();
    expect(requestLineProblem({ ...LINE, path: 'no-slash' }, LINE)).toMatch(/:path/);
    expect(requestLineProblem({ ...LINE, path: '/a b' }, LINE)).toMatch(/:path/);
    expect(requestLineProblem({ ...LINE, method: 'G T' }, LINE)).toMatch(/:method/);
    expect(requestLineProblem({ ...LINE, method: 'CONNECT' }, LINE)).toMatch(/CONNECT/);
    expect(requestLineProblem({ ...LINE, authority: 'a\r\nb' }, LINE)).toMatch(/:authority/);
    expect(requestLineProblem({ ...LINE, authority: '[::1]:8080' }, LINE)).toBeUndefined();
    expect(requestLineProblem({ ...LINE, method: 'OPTIONS', path: '*' }, LINE)).toBeUndefined();
  });
});
