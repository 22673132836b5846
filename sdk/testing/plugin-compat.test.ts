// Compatibility of every SDK-built plugin: it exports the proxy-wasm 0.2.1 marker, both allocator names and the
// callbacks, imports nothing but env.proxy_* hostcalls and WASI (no env.abort / env.seed / env.trace), and the
// same behaviour holds when driven through the raw runtime host without the emulator.
import { readdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { MetricsRegistry } from '../../runtime/telemetry/metrics-registry.js';
import { ForeignFunctionRegistry } from '../../runtime/wasm/foreign-function.js';
import { HOSTCALL_SIGNATURES } from '../../runtime/wasm/host-functions/host-imports.js';
import { PluginHost } from '../../runtime/wasm/plugin-host.js';
import { ensurePluginBuilt } from './ensure-plugin-built.js';

const PLUGINS_DIR = fileURLToPath(new URL('../../plugins/', import.meta.url));
const PLUGINS = readdirSync(PLUGINS_DIR, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name);

describe.each(PLUGINS)('plugin %s', (name) => {
  it('exports proxy_abi_version_0_2_1 and imports only ABI and WASI functions', async () => {
    const wasm = await ensurePluginBuilt(`${PLUGINS_DIR}${name}`);
    const module = await WebAssembly.compile(await readFile(wasm));
    const exports = WebAssembly.Module.exports(module).map((e) => e.name);
    expect(exports).toContain('proxy_abi_version_0_2_1');
    expect(exports).toContain('proxy_on_memory_allocate');
    expect(exports).toContain('malloc');
    expect(exports).toContain('memory');
    expect(exports).toContain('_initialize');
    expect(exports).toContain('proxy_on_context_create');
    expect(exports.filter((e) => e.startsWith('proxy_abi_version'))).toEqual(['proxy_abi_version_0_2_1']);
    // All first-party plugins are header-only: no body or trailer callbacks, so weft's L7 path streams bodies past them.
    expect(exports.filter((e) => /^proxy_on_(request|response)_(body|trailers)$/.test(e))).toEqual([]);
    for (const imp of WebAssembly.Module.imports(module)) {
      const ok = (imp.module === 'env' && imp.name in HOSTCALL_SIGNATURES) || imp.module === 'wasi_snapshot_preview1';
      expect(ok, `${imp.module}.${imp.name}`).toBe(true);
    }
  });
});

const RAW_CASES: { plugin: string; config: unknown; headers: [string, string][]; status: number }[] = [
  { plugin: 'authz', config: { policies: [{ action: 'DENY', rules: [{ to: [{ operation: { paths: ['/admin/*'] } }] }] }] }, headers: [[':method', 'GET'], [':path', '/admin/x'], [':authority', 'a']], status: 403 },
  { plugin: 'cors', config: { allowOrigins: ['https://a.test'] }, headers: [[':method', 'OPTIONS'], [':path', '/'], [':authority', 'a'], ['origin', 'https://a.test'], ['access-control-request-method', 'GET']], status: 204 },
  { plugin: 'fault-injection', config: { abort: { httpStatus: 503 } }, headers: [[':method', 'GET'], [':path', '/'], [':authority', 'a']], status: 503 },
  { plugin: 'jwt-authn', config: { providers: [{ issuer: 'i', jwks: { keys: [{ kty: 'EC', crv: 'P-256', x: 'f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU', y: 'x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0' }] } }] }, headers: [[':method', 'GET'], [':path', '/'], [':authority', 'a']], status: 401 },
  { plugin: 'ratelimit', config: { domain: 'd', descriptors: [[{ key: 'k', value: 'v' }]], failureMode: 'deny' }, headers: [[':method', 'GET'], [':path', '/'], [':authority', 'a']], status: 500 },
];

describe('raw host', () => {
  it.each(RAW_CASES)('$plugin answers $status driven through PluginHost and FilterChain directly', async ({ plugin, config, headers, status }) => {
    const wasm = await ensurePluginBuilt(`${PLUGINS_DIR}${plugin}`);
    const host = new PluginHost({ metrics: new MetricsRegistry(), foreignFunctions: new ForeignFunctionRegistry(), idleMs: 0 });
    try {
      const loaded = await host.load([{ name: plugin, url: pathToFileURL(wasm).href, phase: 'UNSPECIFIED_PHASE', priority: 0, failStrategy: 'FAIL_CLOSE', config }]);
      expect(loaded.ok).toBe(true);
      const chain = host.createStream([plugin]);
      const action = chain.onRequestHeaders(headers.map(([k, v]) => [k, v]), true);
      expect(action.kind).toBe('localResponse');
      if (action.kind === 'localResponse') expect(action.response.status).toBe(status);
      chain.done();
    } finally {
      host.close();
    }
  });

  it('header-rewrite behaves the same driven through PluginHost and FilterChain directly', async () => {
    const wasm = await ensurePluginBuilt(`${PLUGINS_DIR}header-rewrite`);
    const host = new PluginHost({ metrics: new MetricsRegistry(), foreignFunctions: new ForeignFunctionRegistry(), idleMs: 0 });
    try {
      const loaded = await host.load([
        {
          name: 'rewrite',
          url: pathToFileURL(wasm).href,
          phase: 'UNSPECIFIED_PHASE',
          priority: 0,
          failStrategy: 'FAIL_CLOSE',
          config: { request: { remove: ['x-internal'], set: [{ name: 'x-source-principal', fromProperty: 'source.principal' }] } },
        },
      ]);
      expect(loaded.ok).toBe(true);
      const chain = host.createStream(['rewrite'], { source: { address: '10.0.0.9', port: 1, principal: 'spiffe://td/ns/a/sa/b' } });
      const headers: [string, string][] = [[':method', 'GET'], [':path', '/'], ['x-internal', '1']];
      expect(chain.onRequestHeaders(headers, true).kind).toBe('continue');
      expect(headers).toEqual([[':method', 'GET'], [':path', '/'], ['x-source-principal', 'spiffe://td/ns/a/sa/b']]);
      chain.done();
      const bad = await host.load([{ name: 'rewrite', url: pathToFileURL(wasm).href, phase: 'UNSPECIFIED_PHASE', priority: 0, failStrategy: 'FAIL_CLOSE', config: 'nope' }]);
      expect(bad.ok).toBe(false);
      expect(host.has('rewrite')).toBe(true);
    } finally {
      host.close();
    }
  });
});
