// The SDK's first-party plugins (header-rewrite, cors, fault-injection) on real traffic through weft's L7 path, attached by annotation.
import { afterEach, describe, expect, it } from 'vitest';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { request } from 'undici';
import { ensurePluginBuilt } from '../../sdk/testing/index.js';
import { pluginConfig } from '../helpers/wasm-fixtures.js';
import { createTestHost } from '../helpers/wasm-host.js';
import { makeConfig, startHttpUpstream, startProxy } from './l7-harness.js';
import { createWasmPlugins } from '../../runtime/l7/wasm-filter.js';
import type { PluginConfig } from '../../runtime/config/config-schema.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function firstParty(name: string, config: unknown, extra: Partial<PluginConfig> = {}): Promise<PluginConfig> {
  const wasm = await ensurePluginBuilt(fileURLToPath(new URL(`../../plugins/${name}`, import.meta.url)));
  return pluginConfig(name, pathToFileURL(wasm).href, { config, ...extra });
}

async function setup(plugins: PluginConfig[]) {
  const up = await startHttpUpstream('127.0.0.1', 0, (req, res) => {
    res.setHeader('server', 'origin/1.0');
    res.setHeader('x-seen-headers', JSON.stringify(req.headers));
    res.end('origin');
  });
  cleanups.push(() => up.close());
  const t = createTestHost();
  const loaded = await t.host.load(plugins);
  expect(loaded).toEqual({ ok: true, plugins: plugins.map((p) => p.name) });
  cleanups.push(() => Promise.resolve(t.host.close()));
  const config = makeConfig({
    plugins,
    workloads: [{ name: 'api-1', addresses: ['127.0.0.1'], labels: { app: 'api' } }],
    services: [{ name: 'api', addresses: ['10.96.0.80'], ports: [{ port: 80, targetPort: up.port, appProtocol: 'http' }], selector: { app: 'api' }, annotations: { 'weft.dev/plugins': plugins.map((p) => p.name).join(', ') } }],
  });
  const h = await startProxy(config, 'api.default', 80, { plugins: createWasmPlugins(t.host, () => config.plugins) });
  cleanups.push(() => h.close());
  return { h, up };
}

describe('first-party plugins through L7', () => {
  it('header-rewrite and cors on live requests', async () => {
    const rewrite = await firstParty('header-rewrite', {
      request: { remove: ['x-internal-token'], set: [{ name: 'x-env', value: 'prod' }, { name: 'x-source-principal', fromProperty: 'source.principal', default: 'anonymous' }] },
      response: { remove: ['server'], set: [{ name: 'x-request-user', fromHeader: 'x-user' }] },
    });
    const cors = await firstParty('cors', { allowOrigins: ['https://app.example.com'], allowMethods: ['GET', 'PUT'], allowHeaders: ['content-type'], maxAgeSeconds: 600 }, { phase: 'AUTHN' });
    const { h, up } = await setup([rewrite, cors]);

    const res = await request(`http://127.0.0.1:${h.port}/api`, { headers: { 'x-internal-token': 'secret', 'x-user': 'ada', origin: 'https://app.example.com' } });
    expect(res.statusCode).toBe(200);
    expect(await res.body.text()).toBe('origin');
    const seen = JSON.parse(String(res.headers['x-seen-headers'])) as Record<string, string>;
    expect(seen['x-env']).toBe('prod');
    expect(seen['x-source-principal']).toBe('anonymous');
    expect(seen['x-internal-token']).toBeUndefined();
    expect(res.headers.server).toBeUndefined();
    expect(res.headers['x-request-user']).toBe('ada');
    expect(res.headers['access-control-allow-origin']).toBe('https://app.example.com');

    const before = up.requests;
    const preflight = await request(`http://127.0.0.1:${h.port}/api`, { method: 'OPTIONS', headers: { origin: 'https://app.example.com', 'access-control-request-method': 'PUT' } });
    expect(preflight.statusCode).toBe(204);
    expect(String(preflight.headers['access-control-allow-methods'])).toContain('PUT');
    await preflight.body.text();
    expect(up.requests).toBe(before);
  });

  it('fault-injection aborts on live requests without reaching the upstream', async () => {
    const fault = await firstParty('fault-injection', { abort: { httpStatus: 418, percentage: { value: 100 } } });
    const { h, up } = await setup([fault]);
    const res = await request(`http://127.0.0.1:${h.port}/`);
    expect(res.statusCode).toBe(418);
    expect(await res.body.text()).toContain('fault filter abort');
    expect(up.requests).toBe(0);
  });
});
