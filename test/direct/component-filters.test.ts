// Typed component filters (weft:filter/http-filter) in the L7 chain next to proxy-wasm plugins: the same header edit
// gives the same result as the proxy-wasm filter (alone and in one chain, in Envoy's order), local replies, CPU and
// memory limits with failStrategy, and bad input (a core module, the wrong world, a wrong sha256, a refused config)
// refused with its reason while the running configuration keeps serving.
import { createHash } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { componentEmbed, componentNew } from '@bytecodealliance/jco';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { functionFixture, type FunctionFixture } from '../helpers/function-fixtures.js';
import { fixture, wasmFileUrl } from '../helpers/wasm-fixtures.js';
import { metricValue, startWeft, testConfig, type WeftUnderTest } from '../helpers/weft-harness.js';

let filter: FunctionFixture;
let bodyFilter: FunctionFixture;
let coreUrl: string;
let dir: string;
let origin: http.Server;
let w: WeftUnderTest;
let baseRaw: Record<string, unknown>;
const ports: Record<string, number> = {};

const SERVICES = {
  wasm: 'add-header',
  comp: 'header-filter',
  // The component runs first on the request (AUTHN), so the proxy-wasm edit wins there; responses run in reverse.
  both: 'add-header, header-filter-first',
  guard: 'header-filter-guard',
  spin: 'header-filter-misbehaving',
  spinopen: 'header-filter-misbehaving-open',
  body: 'body-filter',
} as const;
const NAMES = Object.keys(SERVICES) as (keyof typeof SERVICES)[];
/** localPorts are keyed by their listen address: one loopback address per service. */
const hostOf = (name: keyof typeof SERVICES): string => `127.0.0.${101 + NAMES.indexOf(name)}`;

function fileOf(name: string, bytes: Uint8Array): { url: string; sha256: string } {
  const path = join(dir, name);
  writeFileSync(path, bytes);
  return { url: `file://${path}`, sha256: createHash('sha256').update(bytes).digest('hex') };
}

interface Seen {
  status: number;
  upstream: Record<string, string | string[] | undefined> | undefined;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** One request through `service`'s local port; `upstream` is what the origin received (undefined for a local reply). */
function send(service: keyof typeof SERVICES, path: string, headers: [string, string][] = [], body?: string): Promise<Seen> {
  return new Promise((resolve, reject) => {
    const head = body === undefined ? headers : [...headers, ['content-length', String(Buffer.byteLength(body))] as [string, string]];
    const req = http.request({ host: hostOf(service), port: ports[service], method: body === undefined ? 'GET' : 'POST', path, headers: [['host', `${service}.default`], ...head].flat(), agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => {
        const fromOrigin = res.headers['x-origin'] === '1';
        resolve({ status: res.statusCode ?? 0, upstream: fromOrigin ? (JSON.parse(body) as Seen['upstream']) : undefined, headers: res.headers, body: fromOrigin ? '' : body });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

beforeAll(async () => {
  filter = await functionFixture('header-filter', 'http-filter');
  bodyFilter = await functionFixture('body-filter', 'http-body-filter');
  coreUrl = await wasmFileUrl(await fixture('add-header'));
  dir = mkdtempSync(join(tmpdir(), 'weft-component-filters-'));
  process.env.WEFT_CACHE_DIR = join(dir, 'cache');
  origin = http.createServer((req, res) => {
    res.setHeader('x-origin', '1');
    res.end(JSON.stringify(req.headers));
  });
  await new Promise<void>((r) => origin.listen(0, '127.0.0.71', r));
  const originPort = (origin.address() as net.AddressInfo).port;
  const names = NAMES;
  baseRaw = {
    workloads: [{ name: 'origin', addresses: ['127.0.0.71'], labels: { app: 'origin' } }],
    services: names.map((name) => ({ name, ports: [{ port: 80, targetPort: originPort, appProtocol: 'http' }], selector: { app: 'origin' }, annotations: { 'weft.dev/plugins': SERVICES[name] } })),
    // A SpiderMonkey guest now and then runs its own GC inside a call (tens of ms of CPU on a loaded machine): the
    // budgets here are generous so only the misbehaving calls are stopped.
    plugins: [
      { name: 'add-header', url: coreUrl },
      // No kind: the file's preamble says it is a component.
      { name: 'header-filter', url: filter.url, sha256: filter.sha256, limits: { cpuMs: 1000, memoryMb: 64 } },
      { name: 'header-filter-first', url: filter.url, kind: 'component', phase: 'AUTHN', config: { requestValue: 'component', responseValue: 'component' }, limits: { cpuMs: 1000, memoryMb: 64 } },
      { name: 'header-filter-guard', url: filter.url, config: { denyPrefix: '/admin', statusPrefix: '/status/' }, limits: { cpuMs: 1000, memoryMb: 64 } },
      { name: 'header-filter-misbehaving', url: filter.url, config: { misbehave: true }, limits: { cpuMs: 300, memoryMb: 32 } },
      { name: 'header-filter-misbehaving-open', url: filter.url, config: { misbehave: true }, failStrategy: 'FAIL_OPEN', limits: { cpuMs: 300, memoryMb: 32 } },
      { name: 'body-filter', url: bodyFilter.url, limits: { cpuMs: 1000, memoryMb: 64 } },
    ],
    localPorts: names.map((name) => ({ listen: `${hostOf(name)}:0`, service: `${name}.default`, port: 80 })),
  };
  w = await startWeft(baseRaw);
  for (const name of names) ports[name] = w.app.ports.localPorts[`${hostOf(name)}:0`]!;
}, 900_000);

afterAll(async () => {
  await w?.close();
  await new Promise((r) => origin?.close(r));
});

describe('component filters in the L7 chain', () => {
  const corpus: [string, [string, string][]][] = [
    ['/', []],
    ['/a/b?c=d', [['x-wasm-filter', 'off']]],
    ['/twice', [['x-wasm-filter', 'one'], ['x-wasm-filter', 'two']]],
    ['/other', [['X-Served-By', 'client'], ['x-keep', 'yes']]],
  ];

  it.each(corpus)('edits %s exactly as the proxy-wasm filter does', async (path, headers) => {
    const wasm = await send('wasm', path, headers);
    const comp = await send('comp', path, headers);
    expect(comp.status).toBe(200);
    expect(comp.upstream?.['x-wasm-filter']).toBe('on');
    expect(comp.headers['x-served-by']).toBe('weft-wasm');
    const strip = (s: Seen): unknown => ({ ...s, headers: { ...s.headers, date: undefined }, upstream: { ...s.upstream, host: undefined, 'x-request-id': undefined, traceparent: undefined } });
    expect(strip(comp)).toEqual(strip(wasm));
  });

  it('runs in one chain with a proxy-wasm plugin in Envoy order: phase on the request, reversed on the response', async () => {
    const r = await send('both', '/', [['x-wasm-filter', 'client']]);
    expect(r.status).toBe(200);
    // Request: header-filter-first (AUTHN) set "component", then add-header replaced it with "on".
    expect(r.upstream?.['x-wasm-filter']).toBe('on');
    // Response: add-header added "weft-wasm" first, then the component replaced every value with "component".
    expect(r.headers['x-served-by']).toBe('component');
  });

  it('answers locally from a filter (403 with its headers), and sees the path through property()', async () => {
    const denied = await send('guard', '/admin/users');
    expect(denied).toMatchObject({ status: 403, upstream: undefined, body: 'denied\n' });
    expect(denied.headers['x-denied-by']).toBe('component');
    // Local replies skip the upstream, not the response phase (as Envoy's local replies pass encoder filters).
    expect((await send('guard', '/public')).upstream?.['x-wasm-filter']).toBe('on');
    expect(w.logs.some((l) => l.msg === 'denied /admin/users' && l.plugin === 'header-filter-guard')).toBe(true);
  });

  it('applies a :status edit on the response as Envoy does, and answers 502 for one the client cannot be sent', async () => {
    const created = await send('guard', '/status/201');
    expect(created.status).toBe(201);
    expect(created.headers['x-status-was']).toBe('200, now 201');
    expect(created.upstream?.['x-wasm-filter']).toBe('on');
    const accessLine = await w.waitForLog((e) => e.path === '/status/201');
    expect(accessLine.response_code).toBe(201);
    for (const invalid of ['/status/abc', '/status/101', '/status/204']) {
      const r = await send('guard', invalid);
      expect(r.status, invalid).toBe(502);
      expect(r.body).toMatch(/invalid :status/);
    }
    expect((await send('guard', '/public')).status).toBe(200);
  });

  it('shows an http-body-filter the whole request body: it answers from it, or edits the waiting headers', async () => {
    const ok = await send('body', '/upload', [], 'hello body');
    expect(ok.status).toBe(200);
    expect(ok.upstream?.['x-body-length']).toBe('10');
    expect(ok.headers['x-body-filter']).toBe('seen');
    const refused = await send('body', '/upload', [], 'an evil body');
    expect(refused).toMatchObject({ status: 400, upstream: undefined, body: 'no evil bodies\n' });
  });

  it.each([
    ['loop', 'cpu_budget'],
    ['bomb', undefined],
    ['throw', 'trap'],
  ])('stops a filter that misbehaves (%s) on the event loop: 503 under FAIL_CLOSE, and the next request is served', async (what, reason) => {
    // The first call of a phase has the startup budget (V8 compiles Wasm lazily); the plugin's own budget applies after.
    expect((await send('spin', '/warm')).status, JSON.stringify(w.logs.filter((l) => l.plugin !== undefined).slice(-3))).toBe(200);
    const before = await w.metrics();
    const bad = await send('spin', '/', [['x-misbehave', what]]);
    expect(bad.status).toBe(503);
    expect(bad.headers['x-weft-error']).toBe('WEFT_ERR_PLUGIN_FAILED');
    const after = await w.metrics();
    const failures = (m: string): number => metricValue(m, 'weft_component_filter_failures_total', { plugin: 'header-filter-misbehaving', ...(reason === undefined ? {} : { reason }) });
    expect(failures(after)).toBe(failures(before) + 1);
    const good = await send('spin', '/');
    expect(good.status, JSON.stringify(w.logs.filter((l) => l.plugin !== undefined).slice(-4))).toBe(200);
    expect(good.upstream?.['x-wasm-filter']).toBe('on');
  }, 60_000);

  it('skips a failing filter under FAIL_OPEN: the request goes on without its edit', async () => {
    expect((await send('spinopen', '/warm')).status).toBe(200);
    const r = await send('spinopen', '/', [['x-misbehave', 'loop']]);
    expect(r.status).toBe(200);
    expect(r.upstream?.['x-wasm-filter']).toBeUndefined();
    expect((await send('spinopen', '/')).upstream?.['x-wasm-filter']).toBe('on');
  }, 60_000);
});

describe('component filter admission', () => {
  const withPlugin = (extra: Record<string, unknown>): Record<string, unknown> => ({
    ...baseRaw,
    plugins: [...(baseRaw.plugins as Record<string, unknown>[]), { name: 'candidate', ...extra }],
  });

  it.each([
    ['a core module given as a component filter', () => Promise.resolve({ url: coreUrl, kind: 'component' }), 'plugin candidate: a core WebAssembly module given as a component filter'],
    [
      'a component of the wrong world',
      async () => fileOf('wrong.wasm', await componentNew(await componentEmbed({ dummy: true, witSource: 'package weft:wrong@0.1.0; world wrong { export run: func() -> string; }', world: 'wrong' }), [])),
      'plugin candidate: wrong world: the component exports run; a component filter must export weft:filter/filter@0.1.x',
    ],
    ['a wrong sha256', () => Promise.resolve({ url: filter.url, sha256: '0'.repeat(64) }), 'plugin candidate: sha256 mismatch for file://'],
    ['a configuration its configure() rejects', () => Promise.resolve({ url: filter.url, config: { reject: 'no such mode' } }), 'plugin candidate: plugin "candidate" failed (configure_failed): configure rejected its configuration: no such mode'],
  ])('refuses %s with its reason; the running chain keeps serving', async (_what, make, reason) => {
    const result = await w.app.reload(testConfig(withPlugin(await make())));
    expect(result.ok).toBe(false);
    expect(!result.ok && result.problems.join('\n')).toContain(reason);
    const r = await send('comp', '/still');
    expect(r.status, r.body + JSON.stringify(w.logs.filter((l) => l.plugin !== undefined).slice(-3))).toBe(200);
    expect(r.upstream?.['x-wasm-filter']).toBe('on');
  }, 120_000);

  it('refuses a component with I/O imports as a filter (it would run on the event loop)', async () => {
    const io = await componentNew(
      await componentEmbed({
        dummy: true,
        witSource: `package weft:filter@0.1.0;
          interface clock { now: func() -> u64; }
          interface filter { on-request-headers: func(end-of-stream: bool) -> u8; }
          world w { import clock; export filter; }`,
        world: 'w',
      }),
      [],
    );
    const result = await w.app.reload(testConfig(withPlugin({ ...fileOf('io.wasm', io), kind: 'component' })));
    expect(!result.ok && result.problems.join('\n')).toContain('plugin candidate: imports weft:filter/clock: a component filter runs on the event loop and may import only weft:filter/host');
  });
});
