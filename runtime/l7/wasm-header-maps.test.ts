// The plugin header maps served from the exchange's HeaderList: lookups, adds, sets of new names and edits of plain
// fields never build the pairs, pseudo-header edits and whole-map reads do, and either way the list ends up as a pair
// map would have left it.
import { afterEach, describe, expect, it } from 'vitest';
import { fixture, pluginConfig, wasmFileUrl, wat, PRELUDE } from '../../test/helpers/wasm-fixtures.js';
import { createTestHost, type TestHost } from '../../test/helpers/wasm-host.js';
import { FIELD_REMOVED, FIELD_REPLACED, HeaderList } from './header-list.js';
import type { BodyAccess, FilterRequestInfo } from './l7-filter.js';
import { RequestHeaderMap, ResponseHeaderMap } from './wasm-header-maps.js';
import { wasmChainFilter } from './wasm-filter.js';
import { requestPairs, responsePairs, writeBackFields, type RequestLine } from './wasm-header-sync.js';
import { firstValue, joinedValue, removeFrom, replaceIn, type LazyHeaderMap } from '../wasm/lazy-header-map.js';
import { prng } from '../../test/helpers/prng.js';
import { HeadParseError, parseResponseHead } from './http1-head-parser.js';
import { ResponseHeadFields } from './response-head-fields.js';

const LINE: RequestLine = { method: 'GET', path: '/a?b=1', authority: 'svc' };

describe('RequestHeaderMap / ResponseHeaderMap', () => {
  it('answers lookups from the list and the request line without building pairs; host is hidden, repeats are joined', () => {
    const map = new RequestHeaderMap(new HeaderList(['host', 'svc', 'accept', 'a', 'x-r', '1', 'x-r', '2']), LINE.method, LINE.path, LINE.authority);
    expect(map.length).toBe(7);
    expect(map.first(':path')).toBe('/a?b=1');
    expect(map.joined(':authority')).toBe('svc');
    expect(map.first(':scheme')).toBe('http');
    expect(map.first('host')).toBeUndefined();
    expect(map.first('x-r')).toBe('1');
    expect(map.joined('x-r')).toBe('1, 2');
    map.append(['x-r', '3']);
    expect(map.joined('x-r')).toBe('1, 2, 3');
    expect(map.length).toBe(8);
    expect(map.built).toBe(false);
  });

  it('builds the pairs in map order with the appended entries last, then appends to them', () => {
    const map = new RequestHeaderMap(new HeaderList(['host', 'svc', 'accept', 'a']), LINE.method, LINE.path, LINE.authority);
    map.append(['x-new', '1']);
    expect(map.pairs()).toEqual([[':method', 'GET'], [':path', '/a?b=1'], [':authority', 'svc'], [':scheme', 'http'], ['accept', 'a'], ['x-new', '1']]);
    expect(map.built).toBe(true);
    expect(map.appended).toEqual([]);
    map.append(['x-more', '2']);
    expect(map.pairs().at(-1)).toEqual(['x-more', '2']);
    expect(map.joined('x-more')).toBe('2');
    map.reset(map.list);
    expect(map.built).toBe(false);
    expect(map.length).toBe(5);
  });

  it('applies appended fields as appends (the head can still leave as it came) and keeps host and pseudo-header repeats', () => {
    const list = new HeaderList(['host', 'svc', 'accept', 'a']);
    const map = new RequestHeaderMap(list, LINE.method, LINE.path, LINE.authority);
    map.append(['x-a', '1']);
    map.append(['host', 'canary']);
    map.append([':path', '/ignored']);
    expect(map.applyAppended()).toBe(true);
    expect(list.flat).toEqual(['host', 'svc', 'accept', 'a', 'x-a', '1']);
    expect(list.appendedFrom).toBe(4);
    expect(map.appendedHost()).toBe('canary');
    expect(map.appended).toEqual([['host', 'canary'], [':path', '/ignored']]);
    // The list now holds x-a: the map shows it once.
    expect(map.joined('x-a')).toBe('1');
  });

  it('shows a response as :status and its fields', () => {
    const list = new HeaderList(['server', 'x']);
    const map = new ResponseHeaderMap(list, 204);
    expect(map.first(':status')).toBe('204');
    expect(map.length).toBe(2);
    map.append(['x-b', '2']);
    map.append([':status', '500']);
    expect(map.first(':status')).toBe('204');
    expect(map.applyAppended()).toBe(true);
    expect(list.flat).toEqual(['server', 'x', 'x-b', '2']);
    expect(map.pairs()).toEqual([[':status', '204'], ['server', 'x'], ['x-b', '2'], [':status', '500']]);
  });
});

const VALUES = ['1', '2', 'v'];

/** One op a plugin can make on a name of `names`, applied to a lazy map and to plain pairs (the built map) alike; returns the op and the name. */
function step(pick: () => number, names: readonly string[], lazy: LazyHeaderMap, pairs: [string, string][], log: string[]): [number, string] {
  const name = names[Math.floor(pick() * names.length)]!;
  const value = VALUES[Math.floor(pick() * VALUES.length)]!;
  const op = Math.floor(pick() * 3);
  log.push(`${['add', 'replace', 'remove'][op]} ${name} ${value}`);
  if (op === 0) {
    lazy.append([name, value]);
    pairs.push([name, value]);
  } else if (op === 1) {
    lazy.replace(name, value);
    replaceIn(pairs, name, value);
  } else {
    lazy.remove(name);
    removeFrom(pairs, name, 0);
  }
  return [op, name];
}

describe('field edits on an unbuilt map', () => {
  const NAMES = ['accept', 'x-a', 'x-b', 'host', ':path', ':authority', 'x-new'];

  it('answers and writes back as the built pairs would, over seeded random removes, replaces and adds', () => {
    const pick = prng(20261207);
    for (let round = 0; round < 1500; round++) {
      const flat = ['host', 'svc'];
      const fields = Math.floor(pick() * 5);
      for (let i = 0; i < fields; i++) flat.push(NAMES[Math.floor(pick() * 3)]!, VALUES[Math.floor(pick() * VALUES.length)]!);
      const list = new HeaderList([...flat]);
      const lazy = new RequestHeaderMap(list, LINE.method, LINE.path, LINE.authority);
      const pairs = requestPairs(new HeaderList([...flat]), LINE, []);
      const log: string[] = [`fields ${flat.join(' ')}`];
      const ops = 1 + Math.floor(pick() * 5);
      for (let i = 0; i < ops; i++) {
        step(pick, NAMES, lazy, pairs, log);
        const where = log.join('; ');
        expect(lazy.length, where).toBe(pairs.length);
        for (const n of NAMES) {
          expect(lazy.first(n), where).toBe(firstValue(pairs, n));
          expect(lazy.joined(n), where).toBe(joinedValue(pairs, n));
        }
      }
      const where = log.join('; ');
      // A pseudo-header or host edit builds the map (the request line path); field edits alone never do.
      if (!lazy.built) {
        lazy.applyAppended();
        const expected = new HeaderList([...flat]);
        writeBackFields(expected, pairs, 'host');
        expect(list.flat, where).toEqual(expected.flat);
        expect(lazy.fieldEdits, where).toEqual([]);
      } else expect(lazy.pairs(), where).toEqual(pairs);
    }
  });

  it('removes and replaces original fields by name: the list marks them for the head splice, and nothing is built', () => {
    const list = new HeaderList(['host', 'svc', 'authorization', 'Bearer t', 'x-r', '1', 'accept', 'a', 'x-r', '2']);
    const map = new RequestHeaderMap(list, LINE.method, LINE.path, LINE.authority);
    map.remove('authorization');
    map.replace('x-r', 'one');
    map.append(['x-r', 'extra']);
    map.remove('absent');
    expect(map.built).toBe(false);
    expect(map.length).toBe(4 + 3);
    expect(map.joined('x-r')).toBe('one, extra');
    expect(map.first('authorization')).toBeUndefined();
    expect(map.applyAppended()).toBe(true);
    expect(list.flat).toEqual(['host', 'svc', 'x-r', 'one', 'accept', 'a', 'x-r', 'extra']);
    expect([...list.originalEdits!]).toEqual([0, FIELD_REMOVED, FIELD_REPLACED, 0, FIELD_REMOVED]);
    // Applied edits are forgotten: the map shows the list as it is now.
    expect(map.fieldEdits).toEqual([]);
    expect(map.length).toBe(4 + 3);
  });

  it('edits a response map the same way, :status staying out of the field edits', () => {
    const list = new HeaderList(['server', 'x', 'set-cookie', 'a', 'set-cookie', 'b']);
    const map = new ResponseHeaderMap(list, 200);
    map.remove('set-cookie');
    map.replace('server', 'weft');
    expect(map.built).toBe(false);
    expect(map.length).toBe(2);
    map.replace(':status', '201');
    expect(map.built).toBe(true);
    expect(map.pairs()).toEqual([[':status', '201'], ['server', 'weft']]);
  });
});

describe('the response map on an undecoded head', () => {
  const NAMES = ['server', 'x-a', 'x-b', 'set-cookie', ':status', 'x-new'];
  const LIMITS = { maxHeadBytes: 65536, maxHeaders: 100 };

  /** The head parsed lazily, as the L7 path does, and its fields as an undecoded list. */
  function undecodedList(text: string): HeaderList {
    const buf = Buffer.from(text, 'latin1');
    const res = parseResponseHead(buf, 0, buf.length, LIMITS, false);
    if (res instanceof HeadParseError) throw new Error(res.reason);
    return HeaderList.undecoded(new ResponseHeadFields(res, buf, 0));
  }

  it('a map that is only read by name and appended to never decodes the head', () => {
    const list = undecodedList('HTTP/1.1 200 OK\r\nServer: nginx\r\nX-A: 1\r\nx-a:  2 \r\n\r\n');
    const map = new ResponseHeaderMap(list, 200);
    expect(map.length).toBe(4);
    expect(map.first(':status')).toBe('200');
    expect(map.joined('x-a')).toBe('1, 2');
    expect(map.has('access-control-allow-origin')).toBe(false);
    map.replace('access-control-allow-origin', '*');
    map.append(['vary', 'origin']);
    expect(map.applyAppended()).toBe(true);
    expect(list.decoded).toBe(false);
    expect(list.addedUndecoded).toEqual(['access-control-allow-origin', '*', 'vary', 'origin']);
    expect(list.flat).toEqual(['server', 'nginx', 'x-a', '1', 'x-a', '2', 'access-control-allow-origin', '*', 'vary', 'origin']);
  });

  it('answers and writes back as the built pairs would, over seeded random removes, replaces and adds', () => {
    const pick = prng(20261210);
    for (let round = 0; round < 1000; round++) {
      let text = 'HTTP/1.1 200 OK\r\n';
      const fields = Math.floor(pick() * 5);
      for (let i = 0; i < fields; i++) {
        const name = NAMES[Math.floor(pick() * 4)]!;
        text += `${pick() < 0.5 ? name.toUpperCase() : name}:${pick() < 0.5 ? ' ' : '\t'}${VALUES[Math.floor(pick() * VALUES.length)]!}\r\n`;
      }
      text += '\r\n';
      const list = undecodedList(text);
      const decoded = undecodedList(text).flat;
      const lazy = new ResponseHeaderMap(list, 200);
      const pairs = responsePairs(new HeaderList([...decoded]), 200, []);
      const log: string[] = [JSON.stringify(text)];
      let edited = false;
      const ops = 1 + Math.floor(pick() * 5);
      for (let i = 0; i < ops; i++) {
        const [op, name] = step(pick, NAMES, lazy, pairs, log);
        if (op !== 0 && decoded.includes(name)) edited = true;
        const where = log.join('; ');
        expect(lazy.length, where).toBe(pairs.length);
        for (const n of NAMES) {
          expect(lazy.first(n), where).toBe(firstValue(pairs, n));
          expect(lazy.joined(n), where).toBe(joinedValue(pairs, n));
        }
        // Lookups and appends read the head's bytes, field edits are kept in the map until written back; only a
        // built map (a :status edit) needed every field.
        if (!lazy.built) expect(list.decoded, where).toBe(false);
      }
      const where = log.join('; ');
      if (!lazy.built) {
        lazy.applyAppended();
        const expected = new HeaderList([...decoded]);
        writeBackFields(expected, pairs.filter((p) => p[0] !== ':status'), undefined);
        if (!edited) expect(list.decoded, where).toBe(false);
        expect(list.flat, where).toEqual(expected.flat);
      } else expect(lazy.pairs(), where).toEqual(pairs);
    }
  });
});

describe('plugin header maps through the proxy-wasm host', () => {
  let t: TestHost | undefined;
  afterEach(() => {
    t?.host.close();
    t = undefined;
  });

  const INFO: FilterRequestInfo = { method: 'GET', path: '/a?b=1', authority: 'svc', protocol: 'HTTP/1.1', sourceAddress: '10.0.0.1', sourceIdentity: undefined, destinationService: undefined, requestId: 'r' };
  const body = (): BodyAccess & { routeClears: number } => {
    const b = {
      routeClears: 0,
      replaceRequestBody: () => undefined,
      replaceResponseBody: () => undefined,
      setRequestLine: () => undefined,
      clearRouteCache: () => void b.routeClears++,
      setResponseStatus: () => undefined,
    };
    return b;
  };

  it("header-rewrite's edits (remove, set, add) leave the maps unbuilt, new names appended and existing fields edited by name", async () => {
    t = createTestHost();
    const r = await t.host.load([pluginConfig('hand-rewrite', await wasmFileUrl(await fixture('hand-rewrite')))]);
    expect(r.ok).toBe(true);
    const chain = t.host.createStream(['hand-rewrite']);
    const req = new RequestHeaderMap(new HeaderList(['host', 'svc', 'accept', 'a']), LINE.method, LINE.path, LINE.authority);
    expect(chain.onRequestHeaders(req, true).kind).toBe('continue');
    expect(req.built).toBe(false);
    expect(req.appended).toEqual([['x-wasm-filter', 'on']]);
    const res = new ResponseHeaderMap(new HeaderList(['server', 'x']), 200);
    expect(chain.onResponseHeaders(res, false).kind).toBe('continue');
    expect(res.built).toBe(false);
    expect(res.appended).toEqual([['x-served-by', 'weft-wasm']]);
    chain.done();

    const chain2 = t.host.createStream(['hand-rewrite']);
    const req2 = new RequestHeaderMap(new HeaderList(['host', 'svc', 'x-internal', 'secret', 'x-wasm-filter', 'off']), LINE.method, LINE.path, LINE.authority);
    chain2.onRequestHeaders(req2, true);
    expect(req2.built).toBe(false);
    expect(req2.fieldEdits).toEqual(['x-internal', undefined, 'x-wasm-filter', 'on']);
    expect(req2.length).toBe(5);
    expect(req2.pairs()).toEqual([[':method', 'GET'], [':path', '/a?b=1'], [':authority', 'svc'], [':scheme', 'http'], ['x-wasm-filter', 'on']]);
    chain2.done();

    // Through the L7 adapter: the same edits land in the exchange's lists, new fields as appends.
    const filter = wasmChainFilter(t.host, ['hand-rewrite']);
    for (const [fields, expected, verbatim] of [
      [['host', 'svc', 'accept', 'a'], ['host', 'svc', 'accept', 'a', 'x-wasm-filter', 'on'], true],
      [['host', 'svc', 'x-internal', 'secret', 'x-wasm-filter', 'off'], ['host', 'svc', 'x-wasm-filter', 'on'], false],
    ] as const) {
      const b = body();
      const s = filter.start(INFO, b)!;
      const list = new HeaderList([...fields]);
      expect(s.onRequestHeaders!(list, true)).toBeUndefined();
      expect(list.flat).toEqual(expected);
      expect(list.appendedFrom >= 0).toBe(verbatim);
      expect(b.routeClears).toBe(1);
      const resList = new HeaderList(['server', 'x']);
      expect(s.onResponseHeaders!(200, resList, false)).toBeUndefined();
      expect(resList.flat).toEqual(['server', 'x', 'x-served-by', 'weft-wasm']);
      s.onDone!(200, '-');
    }
  });

  it('get_header_map_value reads an unbuilt map: pseudo-headers from the request line, repeated fields joined', async () => {
    // Copies :path into x-path and the joined x-r into x-r-all with add_header_map_value.
    const copy = (from: number, fromLen: number, to: number, toLen: number): string => `
      (drop (call $get (i32.const 0) (i32.const ${from}) (i32.const ${fromLen}) (i32.const 16) (i32.const 20)))
      (drop (call $add (i32.const 0) (i32.const ${to}) (i32.const ${toLen}) (i32.load (i32.const 16)) (i32.load (i32.const 20))))`;
    const bytes = await wat(`(module
      (import "env" "proxy_get_header_map_value" (func $get (param i32 i32 i32 i32 i32) (result i32)))
      (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
      ${PRELUDE}
      (func (export "proxy_abi_version_0_2_1"))
      (data (i32.const 256) ":path")
      (data (i32.const 288) "x-path")
      (data (i32.const 320) "x-r")
      (data (i32.const 352) "x-r-all")
      (func (export "proxy_on_context_create") (param i32 i32))
      (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
        ${copy(256, 5, 288, 6)}
        ${copy(320, 3, 352, 7)}
        (i32.const 0))
      (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
      (func (export "proxy_on_log") (param i32))
      (func (export "proxy_on_delete") (param i32)))`);
    t = createTestHost();
    const r = await t.host.load([pluginConfig('copier', await wasmFileUrl(bytes))]);
    expect(r.ok).toBe(true);
    const s = wasmChainFilter(t.host, ['copier']).start(INFO, body())!;
    const list = new HeaderList(['host', 'svc', 'x-r', '1', 'x-r', '2']);
    expect(s.onRequestHeaders!(list, true)).toBeUndefined();
    expect(list.flat).toEqual(['host', 'svc', 'x-r', '1', 'x-r', '2', 'x-path', '/a?b=1', 'x-r-all', '1, 2']);
    s.onDone!(0, '-');
  });
});
