// Third-party proxy-wasm filters behave in weft as in Envoy/Istio: a C++ SDK filter registered for the default root id
// "" runs (weft used to default the root id to the plugin's name), a filter that replaces the whole request map without
// the pseudo-headers keeps its fields (weft used to drop the map's first four entries), and edits of :authority, :path
// and :method take effect (weft used to drop them), and so does a :status edit on the response (weft used to drop it).
// Real Rust/Go/C++ SDK binaries cannot be built here (no such toolchains), so each filter is WAT doing exactly the
// hostcalls those filters make.
import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import http2 from 'node:http2';
import net from 'node:net';
import { once } from 'node:events';
import { configSchema } from '../../runtime/config/config-schema.js';
import { createWasmPlugins } from '../../runtime/l7/wasm-filter.js';
import { encodeHeaderMap } from '../../runtime/wasm/header-map-codec.js';
import { PRELUDE, pluginConfig, wasmFileUrl, wat } from '../helpers/wasm-fixtures.js';
import { createTestHost } from '../helpers/wasm-host.js';
import { makeConfig, startFleet, startProxy } from './l7-harness.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A WAT string literal holding exactly `bytes`. */
function watBytes(bytes: Uint8Array | string): string {
  const b = typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes;
  return `"${Array.from(b, (x) => `\\${x.toString(16).padStart(2, '0')}`).join('')}"`;
}

const TAIL = `
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_log") (param i32))
  (func (export "proxy_on_delete") (param i32))`;

/**
 * The C++ SDK's root-context lookup (proxy_wasm_intrinsics.cc ensureRootContext): at root creation it reads
 * plugin_root_id (segments NUL-terminated, the last one too) and makes a root context only when a factory was
 * registered for that id; this filter registered for "" (RegisterContextFactory's default). Without a root context
 * the SDK creates no stream context, so the filter silently does nothing.
 */
const CPP_DEFAULT_ROOT = `(module
  (import "env" "proxy_get_property" (func $get_property (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_replace_header_map_value" (func $replace (param i32 i32 i32 i32 i32) (result i32)))
  ${PRELUDE}
  (func (export "proxy_abi_version_0_2_1"))
  (global $root (mut i32) (i32.const 0))
  (data (i32.const 256) ${watBytes('plugin_root_id\0')})
  (data (i32.const 288) "x-root-context")
  (data (i32.const 320) "registered-for-empty-id")
  (func (export "proxy_on_context_create") (param $id i32) (param $parent i32)
    (if (i32.eqz (local.get $parent)) (then
      (i64.store (i32.const 64) (i64.const 0))
      (if (i32.and (i32.eqz (call $get_property (i32.const 256) (i32.const 15) (i32.const 64) (i32.const 68)))
                   (i32.eqz (i32.load (i32.const 68))))
        (then (global.set $root (local.get $id)))))))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (if (global.get $root) (then
      (drop (call $replace (i32.const 0) (i32.const 288) (i32.const 14) (i32.const 320) (i32.const 23)))))
    (i32.const 0))
  ${TAIL})`;

/** On request (or response) headers, hands `map` to proxy_set_header_map_pairs (Kong's key-auth shape: one whole-map write). */
function setPairsFilter(map: [string, string][], on: 'request' | 'response' = 'request'): string {
  const bytes = encodeHeaderMap(map);
  return `(module
  (import "env" "proxy_set_header_map_pairs" (func $set_pairs (param i32 i32 i32) (result i32)))
  ${PRELUDE}
  (func (export "proxy_abi_version_0_2_1"))
  (data (i32.const 1024) ${watBytes(bytes)})
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_${on}_headers") (param i32 i32 i32) (result i32)
    (drop (call $set_pairs (i32.const ${on === 'request' ? 0 : 2}) (i32.const 1024) (i32.const ${bytes.length})))
    (i32.const 0))
  ${TAIL})`;
}

/**
 * On request headers (or on response headers), proxy_replace_header_map_value(name, value): a canary router rewriting
 * :authority, a path router, a filter turning an upstream answer into another status.
 */
function replaceFilter(name: string, value: string, on: 'request' | 'response' = 'request'): string {
  return `(module
  (import "env" "proxy_replace_header_map_value" (func $replace (param i32 i32 i32 i32 i32) (result i32)))
  ${PRELUDE}
  (func (export "proxy_abi_version_0_2_1"))
  (data (i32.const 256) ${watBytes(name)})
  (data (i32.const 512) ${watBytes(value)})
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_${on}_headers") (param i32 i32 i32) (result i32)
    (drop (call $replace (i32.const ${on === 'request' ? 0 : 2}) (i32.const 256) (i32.const ${name.length}) (i32.const 512) (i32.const ${value.length})))
    (i32.const 0))
  ${TAIL})`;
}

interface Seen {
  name: string;
  method: string;
  url: string;
  headers: Record<string, string | string[] | undefined>;
}

/**
 * Two workloads behind service fleet.default (up-0 version v1, up-1 version v2); requests under /v2/ route to v2, the
 * rest to v1. `plugin` (WAT) is attached to the service, configured with `extra` (e.g. pluginName).
 */
async function setup(plugin: string, extra: Record<string, unknown> = {}) {
  const seen: Seen[] = [];
  const fleet = await startFleet(2, (name, req, res) => {
    seen.push({ name, method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    res.end(name);
  });
  cleanups.push(() => fleet.close());
  const cfg = pluginConfig('third-party', await wasmFileUrl(await wat(plugin)), extra);
  const t = createTestHost();
  const loaded = await t.host.load([cfg]);
  expect(loaded.ok, JSON.stringify(loaded)).toBe(true);
  cleanups.push(() => Promise.resolve(t.host.close()));
  const config = makeConfig({
    plugins: [cfg],
    workloads: [0, 1].map((i) => ({ name: `up-${i}`, addresses: [`127.0.0.${i + 2}`], labels: { app: 'fleet', version: `v${i + 1}` } })),
    services: [{ name: 'fleet', addresses: ['10.96.0.30'], ports: [{ port: 80, targetPort: fleet.port, appProtocol: 'http' }], selector: { app: 'fleet' }, annotations: { 'weft.dev/plugins': 'third-party' } }],
    routes: [{ host: 'fleet.default', http: [{ name: 'v2', match: [{ path: { prefix: '/v2/' } }], backends: [{ labels: { version: 'v2' } }] }, { name: 'v1', backends: [{ labels: { version: 'v1' } }] }] }],
  });
  const h = await startProxy(config, 'fleet.default', 80, { plugins: createWasmPlugins(t.host, () => h.state.current.config.plugins) });
  cleanups.push(() => h.close());
  const send = async (path: string, headers: Record<string, string> = {}, method = 'GET') => {
    const res = await request(`http://127.0.0.1:${h.port}${path}`, { method, headers: { host: 'fleet.default', ...headers } });
    const body = await res.body.text();
    return { status: res.statusCode, body, headers: res.headers, seen: seen.at(-1) };
  };
  return { h, send, seen };
}

/** GET /v1/x for fleet.default over h2c (prior knowledge); the response headers once the stream ended. */
async function h2Get(port: number): Promise<http2.IncomingHttpHeaders> {
  const client = http2.connect(`http://127.0.0.1:${port}`);
  cleanups.push(() => Promise.resolve(void client.close()));
  const req = client.request({ ':method': 'GET', ':path': '/v1/x', ':authority': 'fleet.default' });
  req.end();
  const [headers] = (await once(req, 'response')) as [http2.IncomingHttpHeaders];
  req.resume();
  await once(req, 'end');
  return headers;
}

describe('Envoy/Istio header semantics for third-party filters', () => {
  it('root id defaults to "" as in Istio, so a C++ SDK filter registered for "" runs; pluginName "" is valid', async () => {
    expect(configSchema.safeParse({ plugins: [{ name: 'p', url: 'file:///p.wasm', pluginName: '' }] }).success).toBe(true);
    const { send } = await setup(CPP_DEFAULT_ROOT);
    const r = await send('/x');
    expect(r.status).toBe(200);
    expect(r.seen?.headers['x-root-context']).toBe('registered-for-empty-id');

    // With pluginName set the root id is that name, and the filter (registered for "" only) stays idle, as in Envoy.
    const named = await setup(CPP_DEFAULT_ROOT, { pluginName: 'other' });
    expect((await named.send('/x')).seen?.headers['x-root-context']).toBeUndefined();
    const empty = await setup(CPP_DEFAULT_ROOT, { pluginName: '' });
    expect((await empty.send('/x')).seen?.headers['x-root-context']).toBe('registered-for-empty-id');
  });

  it('a whole-map write without pseudo-headers (Kong key-auth) keeps every field it set and the request line', async () => {
    const consumer: [string, string][] = [
      ['x-consumer-id', 'c-1'],
      ['x-consumer-username', 'alice'],
      ['x-consumer-custom-id', '42'],
      ['x-credential-identifier', 'key-1'],
      ['x-kept', 'yes'],
    ];
    const { send } = await setup(setPairsFilter(consumer));
    const r = await send('/v2/items?page=3', { apikey: 'secret', 'x-dropped': '1' }, 'PUT');
    expect(r.status).toBe(200);
    const s = r.seen;
    for (const [k, v] of consumer) expect(s.headers[k]).toBe(v);
    // Fields the filter left out are gone (it replaced the map); the request line and Host are as the client sent them.
    expect(s.headers['apikey']).toBeUndefined();
    expect(s.headers['x-dropped']).toBeUndefined();
    expect([s.name, s.method, s.url, s.headers.host]).toEqual(['up-1', 'PUT', '/v2/items?page=3', 'fleet.default']);
  });

  it('a whole-map write with the pseudo-headers anywhere in it reads them by name, not by position', async () => {
    const { send } = await setup(setPairsFilter([['x-first', '1'], [':path', '/v2/moved'], ['x-second', '2'], [':method', 'POST'], [':authority', 'fleet.default']]));
    const r = await send('/v1/orig', { 'content-length': '0' });
    const s = r.seen;
    expect([s.headers['x-first'], s.headers['x-second']]).toEqual(['1', '2']);
    expect([s.name, s.method, s.url]).toEqual(['up-1', 'POST', '/v2/moved']);
  });

  it(':authority edits become the Host sent upstream (a canary filter rewriting to host-canary)', async () => {
    const { send, h } = await setup(replaceFilter(':authority', 'host-canary'));
    const r = await send('/x');
    expect(r.status).toBe(200);
    expect(r.seen.headers.host).toBe('host-canary');
    expect(h.accessLines.at(-1)).toMatchObject({ response_code: 200 });
  });

  it(':path edits re-route (Envoy clearRouteCache) and reach the upstream with their query', async () => {
    const { send } = await setup(replaceFilter(':path', '/v2/canary?from=filter'));
    const r = await send('/v1/anything');
    expect([r.seen.name, r.seen.url]).toEqual(['up-1', '/v2/canary?from=filter']);
  });

  it(':method edits take effect', async () => {
    const { send } = await setup(replaceFilter(':method', 'DELETE'));
    const r = await send('/x');
    expect(r.status).toBe(200);
    expect(r.seen.method).toBe('DELETE');
  });

  it('an invalid request line from a filter is refused with 500, never sent', async () => {
    const { send, seen } = await setup(replaceFilter(':path', 'no-slash here'));
    const r = await send('/x');
    expect(r.status).toBe(500);
    expect(r.body).toMatch(/:path/);
    expect(seen).toHaveLength(0);
  });

  it('the same edits apply to h2c requests', async () => {
    const { h, seen } = await setup(replaceFilter(':authority', 'host-canary'));
    const headers = await h2Get(h.port);
    expect(headers[':status']).toBe(200);
    expect(seen.at(-1).headers.host).toBe('host-canary');
  });

  it(':status edits on the response are applied (Envoy sends what the filter set), with that status\'s reason phrase', async () => {
    const { h } = await setup(replaceFilter(':status', '418', 'response'));
    const sock = net.connect(h.port, '127.0.0.1');
    cleanups.push(() => Promise.resolve(void sock.destroy()));
    sock.write('GET /x HTTP/1.1\r\nhost: fleet.default\r\nconnection: close\r\n\r\n');
    const chunks: Buffer[] = [];
    for await (const c of sock) chunks.push(c as Buffer);
    const text = Buffer.concat(chunks).toString('latin1');
    expect(text.split('\r\n')[0]).toBe("HTTP/1.1 418 I'm a Teapot");
    // The body the upstream sent still follows, framed as it was.
    expect(text.endsWith('up-0')).toBe(true);
    expect(h.accessLines.at(-1)).toMatchObject({ response_code: 418 });
  });

  it('a whole response map written without :status keeps the status; one with :status applies it', async () => {
    const kept = await setup(setPairsFilter([['x-only', '1']], 'response'));
    const r1 = await kept.send('/x');
    expect([r1.status, r1.headers['x-only'], r1.body]).toEqual([200, '1', 'up-0']);
    const moved = await setup(setPairsFilter([['x-only', '1'], [':status', '503']], 'response'));
    const r2 = await moved.send('/x');
    expect([r2.status, r2.headers['x-only']]).toEqual([503, '1']);
  });

  it('an invalid :status from a filter, or a 204 over a body, is answered 502 with x-weft-error (never sent)', async () => {
    for (const bad of ['abc', '99', '101', '2000']) {
      const { send } = await setup(replaceFilter(':status', bad, 'response'));
      const r = await send('/x');
      expect(r.status).toBe(502);
      expect(r.headers['x-weft-error']).toBe('WEFT_ERR_PLUGIN_FAILED');
      expect(r.body).toMatch(/:status/);
    }
    const { send } = await setup(replaceFilter(':status', '204', 'response'));
    const r = await send('/x');
    expect(r.status).toBe(502);
    expect(r.body).toMatch(/204/);
  });

  it(':status edits apply to h2c responses too', async () => {
    const { h } = await setup(replaceFilter(':status', '418', 'response'));
    const headers = await h2Get(h.port);
    expect(headers[':status']).toBe(418);
    expect(h.accessLines.at(-1)).toMatchObject({ response_code: 418 });
  });
});
