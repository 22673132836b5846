// proxy-wasm plugins on live L7 traffic: a header-rewriting plugin attached by annotation, a trapping plugin under FAIL_CLOSE and FAIL_OPEN, and Istio phase/priority ordering.
import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { fixture, pluginConfig, wasmFileUrl } from '../helpers/wasm-fixtures.js';
import { createTestHost } from '../helpers/wasm-host.js';
import { makeConfig, startHttpUpstream, startProxy } from './l7-harness.js';
import { createWasmPlugins, orderPlugins } from '../../runtime/l7/wasm-filter.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setup(plugins: { name: string; fixture: string; failStrategy?: 'FAIL_CLOSE' | 'FAIL_OPEN' }[], attach: string) {
  const up = await startHttpUpstream('127.0.0.1', 0, (req, res) => {
    res.setHeader('x-seen-wasm', String(req.headers['x-wasm-filter'] ?? 'absent'));
    res.end('ok');
  });
  cleanups.push(() => up.close());
  const configs = await Promise.all(plugins.map(async (p) => pluginConfig(p.name, await wasmFileUrl(await fixture(p.fixture)), { failStrategy: p.failStrategy ?? 'FAIL_CLOSE' })));
  const t = createTestHost();
  const loaded = await t.host.load(configs);
  expect(loaded.ok).toBe(true);
  cleanups.push(() => Promise.resolve(t.host.close()));
  const config = makeConfig({
    plugins: configs,
    workloads: [{ name: 'app-1', addresses: ['127.0.0.1'], labels: { app: 'app' } }],
    services: [{ name: 'app', addresses: ['10.96.0.50'], ports: [{ port: 80, targetPort: up.port, appProtocol: 'http' }], selector: { app: 'app' }, annotations: { 'weft.dev/plugins': attach } }],
  });
  let current = (): typeof config.plugins => config.plugins;
  const h = await startProxy(config, 'app.default', 80, { plugins: createWasmPlugins(t.host, () => current()) });
  current = () => h.state.current.config.plugins;
  cleanups.push(() => h.close());
  return { h, up };
}

describe('L7 with proxy-wasm plugins', () => {
  it('runs a header-rewriting Wasm plugin on requests and responses', async () => {
    const { h } = await setup([{ name: 'add-header', fixture: 'add-header' }], 'add-header');
    for (let i = 0; i < 20; i++) {
      const res = await request(`http://127.0.0.1:${h.port}/x`, { headers: { 'x-wasm-filter': 'off' } });
      expect(res.statusCode).toBe(200);
      expect(res.headers['x-seen-wasm']).toBe('on');
      expect(res.headers['x-served-by']).toBe('weft-wasm');
      expect(await res.body.text()).toBe('ok');
    }
  });

  it('answers 503 with x-weft-error when a FAIL_CLOSE plugin traps, and passes under FAIL_OPEN', async () => {
    const closed = await setup([{ name: 'bad', fixture: 'misbehave' }], 'bad');
    const res = await request(`http://127.0.0.1:${closed.h.port}/`, { headers: { 'x-trap': '1' } });
    expect(res.statusCode).toBe(503);
    expect(String(res.headers['x-weft-error'])).toMatch(/^WEFT_ERR_/);
    await res.body.text();
    const fine = await request(`http://127.0.0.1:${closed.h.port}/`);
    expect(fine.statusCode).toBe(200);
    await fine.body.text();
    expect(closed.up.requests).toBe(1);

    const open = await setup([{ name: 'bad-open', fixture: 'misbehave', failStrategy: 'FAIL_OPEN' }], 'bad-open');
    const passed = await request(`http://127.0.0.1:${open.h.port}/`, { headers: { 'x-trap': '1' } });
    expect(passed.statusCode).toBe(200);
    await passed.body.text();
  });

  it('fails closed for an attached plugin that is not loaded (open for FAIL_OPEN)', async () => {
    const { h } = await setup([{ name: 'add-header', fixture: 'add-header' }], 'add-header, ghost');
    const cfg = h.state.current.config;
    h.state.update({ ...cfg, plugins: [...cfg.plugins, pluginConfig('ghost', 'file:///nowhere.wasm')] });
    const res = await request(`http://127.0.0.1:${h.port}/`);
    expect(res.statusCode).toBe(503);
    expect(res.headers['x-weft-error']).toBe('WEFT_ERR_PLUGIN_LOAD');
    await res.body.text();
    const next = h.state.current.config;
    h.state.update({ ...next, plugins: next.plugins.map((p) => (p.name === 'ghost' ? { ...p, failStrategy: 'FAIL_OPEN' as const } : p)) });
    const open = await request(`http://127.0.0.1:${h.port}/`);
    expect(open.statusCode).toBe(200);
    expect(open.headers['x-served-by']).toBe('weft-wasm');
    await open.body.text();
  });

  it('orders plugins by phase, then priority (higher first), as Istio WasmPlugin', () => {
    const configs = [
      pluginConfig('stats', 'file:///s.wasm', { phase: 'STATS' }),
      pluginConfig('authz-low', 'file:///a.wasm', { phase: 'AUTHZ', priority: 1 }),
      pluginConfig('authz-high', 'file:///b.wasm', { phase: 'AUTHZ', priority: 10 }),
      pluginConfig('plain', 'file:///p.wasm'),
      pluginConfig('authn', 'file:///n.wasm', { phase: 'AUTHN' }),
    ];
    expect(orderPlugins(['plain', 'stats', 'authz-low', 'authn', 'authz-high', 'unknown'], configs)).toEqual(['authn', 'authz-high', 'authz-low', 'stats', 'plain']);
  });
});
