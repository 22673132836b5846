// authz through the emulator: Istio AuthorizationPolicy semantics (DENY first, then ALLOW, default allow), every
// match kind, metrics, dry-run, and bad configurations refused with the previous policies kept; and the same decisions
// over the host blocks the SDK's small-block allocator recycles (values up to 64 bytes) or frees (longer ones).
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { StreamInfo } from '../../../runtime/wasm/stream-info.js';
import { PluginEmulator, ensurePluginBuilt, memoryGrowth } from '../../../sdk/testing/index.js';

const PLUGIN_DIR = fileURLToPath(new URL('..', import.meta.url));
let wasm: string;
let emu: PluginEmulator | undefined;

beforeAll(async () => {
  wasm = await ensurePluginBuilt(PLUGIN_DIR);
});

afterEach(async () => {
  await emu?.close();
  emu = undefined;
});

const PRODUCTPAGE: StreamInfo = { source: { address: '10.0.0.1', port: 5000, principal: 'spiffe://cluster.local/ns/default/sa/productpage' } };
const OTHER_NS: StreamInfo = { source: { address: '10.0.0.2', port: 5000, principal: 'spiffe://cluster.local/ns/other/sa/sleep' } };
const PLAINTEXT: StreamInfo = { source: { address: '10.0.0.3', port: 5000 } };

/** Sends one request and answers the status the client would see: 200 when it went upstream. */
function status(e: PluginEmulator, method: string, path: string, info: StreamInfo = PRODUCTPAGE, extra: Record<string, string> = {}): number {
  const s = e.stream(info);
  const r = s.sendRequestHeaders({ ':method': method, ':path': path, ':authority': 'Reviews.default:9080', ...extra }, true);
  s.end();
  return r.action === 'continue' ? 200 : (s.localResponse?.status ?? -1);
}

describe('authz', () => {
  it('allows everything without policies', async () => {
    emu = await PluginEmulator.create({ wasm, config: {} });
    expect(status(emu, 'DELETE', '/anything', PLAINTEXT)).toBe(200);
  });

  it('denies on a matching DENY policy before looking at ALLOW policies, with Envoy’s RBAC body', async () => {
    emu = await PluginEmulator.create({
      wasm,
      config: {
        policies: [
          { name: 'allow-all', action: 'ALLOW', rules: [{}] },
          { name: 'no-admin-writes', action: 'DENY', rules: [{ to: [{ operation: { methods: ['POST', 'DELETE'], paths: ['/admin/*'] } }] }] },
        ],
      },
    });
    const s = emu.stream(PRODUCTPAGE);
    expect(s.sendRequestHeaders({ ':method': 'POST', ':path': '/admin/users?x=1', ':authority': 'a' }).action).toBe('localResponse');
    expect(s.localResponse?.status).toBe(403);
    expect(s.localResponseText).toBe('RBAC: access denied');
    s.end();
    expect(status(emu, 'GET', '/admin/users')).toBe(200);
    expect(status(emu, 'POST', '/public')).toBe(200);
    expect(await emu.metricValue('authz_denied_total')).toBe(1);
    expect(await emu.metricValue('authz_allowed_total')).toBe(2);
  });

  it('requires one ALLOW match once any ALLOW policy exists; an ALLOW policy without rules allows nothing', async () => {
    emu = await PluginEmulator.create({
      wasm,
      config: { policies: [{ action: 'ALLOW', rules: [{ from: [{ source: { principals: ['cluster.local/ns/default/sa/productpage'] } }], to: [{ operation: { methods: ['GET'] } }] }] }] },
    });
    expect(status(emu, 'GET', '/reviews/1')).toBe(200);
    expect(status(emu, 'POST', '/reviews/1')).toBe(403);
    expect(status(emu, 'GET', '/reviews/1', OTHER_NS)).toBe(403);
    expect(status(emu, 'GET', '/reviews/1', PLAINTEXT)).toBe(403);
    expect((await emu.reconfigure({ policies: [{ name: 'allow-nothing', action: 'ALLOW' }] })).ok).toBe(true);
    expect(status(emu, 'GET', '/reviews/1')).toBe(403);
  });

  it('matches paths exactly, by prefix, by suffix and by glob, ignoring the query string', async () => {
    emu = await PluginEmulator.create({
      wasm,
      config: { policies: [{ action: 'ALLOW', rules: [{ to: [{ operation: { paths: ['/exact', '/static/*', '*.css', '/api/*/orders/**'] } }] }] }] },
    });
    expect(status(emu, 'GET', '/exact?q=1')).toBe(200);
    expect(status(emu, 'GET', '/exact/more')).toBe(403);
    expect(status(emu, 'GET', '/static/js/app.js')).toBe(200);
    expect(status(emu, 'GET', '/themes/dark.css')).toBe(200);
    expect(status(emu, 'GET', '/api/v1/orders/7/items')).toBe(200);
    expect(status(emu, 'GET', '/api/v1/extra/orders/7')).toBe(403);
  });

  it('applies not-forms, namespaces, hosts and when conditions on headers', async () => {
    emu = await PluginEmulator.create({
      wasm,
      config: {
        policies: [
          {
            name: 'deny-untrusted',
            action: 'DENY',
            rules: [{ from: [{ source: { notNamespaces: ['default'] } }], to: [{ operation: { notPaths: ['/health'] } }] }],
          },
          { action: 'DENY', rules: [{ when: [{ key: 'request.headers[X-Debug]', values: ['*'] }] }] },
          { action: 'DENY', rules: [{ to: [{ operation: { hosts: ['admin.*'] } }] }] },
          { action: 'DENY', rules: [{ when: [{ key: 'request.headers[x-user]', notValues: ['alice', 'bob'] }] }] },
        ],
      },
    });
    expect(status(emu, 'GET', '/reviews', PRODUCTPAGE, { 'x-user': 'alice' })).toBe(200);
    expect(status(emu, 'GET', '/reviews', OTHER_NS, { 'x-user': 'alice' })).toBe(403);
    expect(status(emu, 'GET', '/health', OTHER_NS, { 'x-user': 'alice' })).toBe(200);
    expect(status(emu, 'GET', '/reviews', PRODUCTPAGE, { 'x-user': 'alice', 'x-debug': '1' })).toBe(403);
    expect(status(emu, 'GET', '/reviews', PRODUCTPAGE, { 'x-user': 'mallory' })).toBe(403);
    const s = emu.stream(PRODUCTPAGE);
    s.sendRequestHeaders({ ':method': 'GET', ':path': '/', ':authority': 'ADMIN.example', 'x-user': 'bob' });
    expect(s.localResponse?.status).toBe(403);
    s.end();
  });

  it('answers the configured status and body, or only marks the request in dry-run mode', async () => {
    emu = await PluginEmulator.create({ wasm, config: { denyStatus: 401, denyBody: 'who are you?', policies: [{ action: 'ALLOW', rules: [{ from: [{ source: { principals: ['*'] } }] }] }] } });
    const s = emu.stream(PLAINTEXT);
    s.sendRequestHeaders({ ':method': 'GET', ':path': '/', ':authority': 'a' });
    expect([s.localResponse?.status, s.localResponseText]).toEqual([401, 'who are you?']);
    s.end();
    expect((await emu.reconfigure({ dryRun: true, policies: [{ action: 'ALLOW', rules: [{ from: [{ source: { principals: ['*'] } }] }] }] })).ok).toBe(true);
    const d = emu.stream(PLAINTEXT);
    expect(d.sendRequestHeaders({ ':method': 'GET', ':path': '/', ':authority': 'a' }).action).toBe('continue');
    expect(d.requestHeader('x-weft-authz-dry-run')).toBe('denied');
    d.end();
  });

  it.each([
    ['not JSON', '{policies'],
    ['an unknown action', { policies: [{ action: 'AUDIT', rules: [{}] }] }],
    ['an unsupported source field', { policies: [{ rules: [{ from: [{ source: { ipBlocks: ['10.0.0.0/8'] } }] }] }] }],
    ['an unsupported when key', { policies: [{ rules: [{ when: [{ key: 'request.auth.claims[iss]', values: ['x'] }] }] }] }],
    ['a bad denyStatus', { denyStatus: 99 }],
    ['methods that are not strings', { policies: [{ rules: [{ to: [{ operation: { methods: [1] } }] }] }] }],
  ])('rejects %s and keeps the previous policies', async (_what, bad) => {
    emu = await PluginEmulator.create({ wasm, config: { policies: [{ action: 'DENY', rules: [{ to: [{ operation: { paths: ['/blocked'] } }] }] }] } });
    const result = await emu.reconfigure(bad);
    expect(result.ok).toBe(false);
    expect(emu.logs.some((l) => l.message.startsWith('authz: rejected configuration:'))).toBe(true);
    expect(status(emu, 'GET', '/blocked')).toBe(403);
    expect(status(emu, 'GET', '/open')).toBe(200);
  });
});

/** test/bench/first-party-plugin-bench.ts's configuration. */
const BENCH_CONFIG = {
  policies: [
    { action: 'DENY', rules: [{ to: [{ operation: { paths: ['/admin/*'] } }] }] },
    { action: 'ALLOW', rules: [{ from: [{ source: { namespaces: ['default'] } }], to: [{ operation: { methods: ['GET'], paths: ['/api/*'] } }] }] },
  ],
};

const peer = (principal: string): StreamInfo => ({ source: { address: '10.0.0.1', port: 1, principal } });
/** A principal of more than 64 bytes (the SDK's small-block size): its block is freed, not kept. */
const LONG_SA = `spiffe://cluster.local/ns/default/sa/${'a'.repeat(80)}`;
const LONG_PATH = `/api/${'x'.repeat(100)}?q=${'y'.repeat(40)}`;
/** Header values as weft holds them: one char per byte. */
const bytes = (s: string): string => Buffer.from(s, 'utf8').toString('latin1');

/** [method, path, principal, status]: short and long values interleaved, so recycled and freed blocks alternate. */
const CASES: [string, string, string, number][] = [
  ['GET', '/api/items?page=2', 'spiffe://cluster.local/ns/default/sa/a', 200],
  ['GET', LONG_PATH, LONG_SA, 200],
  ['GET', '/admin/x', 'spiffe://cluster.local/ns/default/sa/a', 403],
  ['GET', `/admin/${'z'.repeat(90)}`, LONG_SA, 403],
  ['POST', LONG_PATH, 'spiffe://cluster.local/ns/default/sa/a', 403],
  ['GET', '/api/items', `spiffe://cluster.local/ns/other/sa/${'b'.repeat(70)}`, 403],
  ['GET', bytes('/api/çà?x=é'), bytes('spiffe://cluster.local/ns/default/sa/ü'), 200],
  ['GET', bytes(`/api/${'é'.repeat(40)}`), LONG_SA, 200],
  ['GET', '/api/x', `spiffe://cluster.local/ns/${'n'.repeat(70)}/sa/a`, 403],
  ['GET', '/api/x', 'cluster.local/ns/default/sa/a', 200],
];

describe('authz over recycled host blocks', () => {
  it('decides the same for values below and above the recycled size, ASCII or not, in any order', async () => {
    emu = await PluginEmulator.create({ wasm, config: BENCH_CONFIG });
    for (let round = 0; round < 3; round++) {
      const order = round === 1 ? [...CASES].reverse() : CASES;
      for (const [method, path, principal, want] of order) expect({ method, path, got: status(emu, method, path, peer(principal)) }).toEqual({ method, path, got: want });
    }
  });

  it('keeps the release build heap flat over a mix of recycled and freed blocks', async () => {
    emu = await PluginEmulator.create({ wasm, config: BENCH_CONFIG, logLevel: 'error' });
    let i = 0;
    const next = (): void => {
      const [method, path, principal] = CASES[i++ % CASES.length]!;
      status(emu!, method, path, peer(principal));
    };
    for (let k = 0; k < 200; k++) next();
    expect(memoryGrowth(emu, 20_000, next)).toBe(0);
  });
});

describe('authz exports', () => {
  it('exports only the callbacks it acts on, so hosts skip response headers, done and log for it', () => {
    const names = WebAssembly.Module.exports(new WebAssembly.Module(readFileSync(wasm))).map((e) => e.name).filter((n) => n.startsWith('proxy_on_'));
    expect(names.sort()).toEqual(['proxy_on_configure', 'proxy_on_context_create', 'proxy_on_delete', 'proxy_on_memory_allocate', 'proxy_on_request_headers', 'proxy_on_vm_start']);
  });
});
