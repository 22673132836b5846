// The SDK's first-party plugins on live HTTP through weft's L7 path (the same .wasm the emulator tests run):
// header-rewrite on requests and responses, authz denying before the upstream, jwt-authn verifying through the
// host's weft.crypto.verify, in Istio phase order.
import { generateKeyPairSync, sign } from 'node:crypto';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { request } from 'undici';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { PluginConfig } from '../../runtime/config/config-schema.js';
import { createWasmPlugins } from '../../runtime/l7/wasm-filter.js';
import { registerCryptoForeignFunctions } from '../../runtime/wasm/crypto-foreign-functions.js';
import { ensurePluginBuilt } from '../../sdk/testing/ensure-plugin-built.js';
import { pluginConfig } from '../helpers/wasm-fixtures.js';
import { createTestHost } from '../helpers/wasm-host.js';
import { makeConfig, startHttpUpstream, startProxy } from './l7-harness.js';

const PLUGINS = fileURLToPath(new URL('../../plugins/', import.meta.url));
const urls: Record<string, string> = {};
const cleanups: (() => Promise<void>)[] = [];

beforeAll(async () => {
  for (const name of ['header-rewrite', 'authz', 'jwt-authn']) urls[name] = pathToFileURL(await ensurePluginBuilt(`${PLUGINS}${name}`)).href;
  urls.api = pathToFileURL(await ensurePluginBuilt(fileURLToPath(new URL('../../sdk/testing/fixtures/api-plugin/', import.meta.url)))).href;
});

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setup(plugins: PluginConfig[]) {
  const up = await startHttpUpstream('127.0.0.1', 0, async (req, res) => {
    if (req.url === '/body') {
      let body = '';
      for await (const chunk of req) body += String(chunk);
      res.setHeader('x-body-seen', body);
      res.setHeader('x-body-size-seen', String(req.headers['x-r-body-size']));
      res.end('response text');
      return;
    }
    if (req.url === '/upload') {
      let n = 0;
      for await (const chunk of req) n += (chunk as Buffer).length;
      res.setHeader('x-received', String(n));
      res.end('ok');
      return;
    }
    if (req.url === '/util' || req.url === '/props') {
      res.setHeader('x-results', JSON.stringify(Object.fromEntries(Object.entries(req.headers).filter(([k]) => k.startsWith('x-r-')))));
      res.end('ok');
      return;
    }
    res.setHeader('x-upstream-saw', JSON.stringify({ env: req.headers['x-env'] ?? null, internal: req.headers['x-internal'] ?? null, trace: req.headers['x-trace-id'] ?? null, user: req.headers['x-user'] ?? null, auth: req.headers.authorization ?? null }));
    res.setHeader('server', 'upstream/1.0');
    res.end('ok');
  });
  cleanups.push(() => up.close());
  const t = createTestHost();
  registerCryptoForeignFunctions(t.foreign);
  const loaded = await t.host.load(plugins);
  expect(loaded).toEqual({ ok: true, plugins: plugins.map((p) => p.name) });
  cleanups.push(() => Promise.resolve(t.host.close()));
  const config = makeConfig({
    plugins,
    workloads: [{ name: 'app-1', addresses: ['127.0.0.1'], labels: { app: 'app' } }],
    services: [{ name: 'app', addresses: ['10.96.0.60'], ports: [{ port: 80, targetPort: up.port, appProtocol: 'http' }], selector: { app: 'app' }, annotations: { 'weft.dev/plugins': plugins.map((p) => p.name).join(', ') } }],
  });
  const h = await startProxy(config, 'app.default', 80, { plugins: createWasmPlugins(t.host, () => config.plugins) });
  cleanups.push(() => h.close());
  return { h, up };
}

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';

describe('SDK plugins on the L7 path', () => {
  it('the SDK API test plugin: bodies both ways, local responses, properties and helpers on live traffic', async () => {
    const { h, up } = await setup([pluginConfig('api', urls.api!, { config: {} })]);
    const body = await request(`http://127.0.0.1:${h.port}/body`, { method: 'POST', body: 'hello' });
    expect(body.statusCode).toBe(200);
    expect(body.headers['x-body-seen']).toBe('<hello>');
    // A request header set in on_request_body goes out with the buffered body.
    expect(body.headers['x-body-size-seen']).toBe('5/5');
    expect(await body.body.text()).toBe('RESPONSE TEXT');
    const local = await request(`http://127.0.0.1:${h.port}/local`);
    expect(local.statusCode).toBe(418);
    expect(local.headers['x-teapot']).toBe('yes');
    expect([...Buffer.from(await local.body.arrayBuffer())]).toEqual([0x61, 0x00, 0xff]);
    const util = await request(`http://127.0.0.1:${h.port}/util`);
    const results = JSON.parse(String(util.headers['x-results'])) as Record<string, string>;
    expect([results['x-r-match'], results['x-r-base64'], results['x-r-pairs']]).toEqual(['truetruefalsetrue', 'aGVsbG8_,6,true', '2:k=v:empty-name']);
    await util.body.text();
    const props = await request(`http://127.0.0.1:${h.port}/props`);
    // No pluginName: the root id is "", as Istio sets it (the plugin's default root context serves it).
    expect(JSON.parse(String(props.headers['x-results']))).toMatchObject({ 'x-r-root-id': '', 'x-r-set-get': 'v1', 'x-r-missing': 'NotFound' });
    await props.body.text();
    expect(up.requests).toBe(3);
  });

  it('header-rewrite edits live requests and responses', async () => {
    const { h } = await setup([
      pluginConfig('header-rewrite', urls['header-rewrite']!, {
        config: { request: { remove: ['x-internal'], set: [{ name: 'x-env', value: 'prod' }], add: [{ name: 'x-trace-id', from: 'traceId' }] }, response: { remove: ['server'], add: [{ name: 'x-rewritten', value: 'yes' }] } },
      }),
    ]);
    for (let i = 0; i < 10; i++) {
      const res = await request(`http://127.0.0.1:${h.port}/reviews/${i}`, { headers: { 'x-internal': 'secret', traceparent: `00-${TRACE_ID}-00f067aa0ba902b7-01` } });
      expect(res.statusCode).toBe(200);
      expect(JSON.parse(String(res.headers['x-upstream-saw']))).toMatchObject({ env: 'prod', internal: null, trace: TRACE_ID });
      expect(res.headers['x-rewritten']).toBe('yes');
      expect(res.headers.server).toBeUndefined();
      expect(await res.body.text()).toBe('ok');
    }
    // A header-only plugin leaves bodies streaming: 3 MiB is more than L7 would ever buffer (1 MiB by default).
    const big = Buffer.alloc(3 * 1024 * 1024, 0x61);
    const upload = await request(`http://127.0.0.1:${h.port}/upload`, { method: 'POST', body: big });
    expect(upload.statusCode).toBe(200);
    expect(upload.headers['x-received']).toBe(String(big.length));
    await upload.body.text();
  });

  it('authz denies with 403 before the upstream; jwt-authn (AUTHN phase) verifies tokens through weft.crypto.verify', async () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const jwks = { keys: [{ ...rsa.publicKey.export({ format: 'jwk' }), kid: 'k1' }] };
    const input = `${Buffer.from(JSON.stringify({ alg: 'RS256', kid: 'k1' })).toString('base64url')}.${Buffer.from(JSON.stringify({ iss: 'https://issuer', sub: 'alice', exp: Math.floor(Date.now() / 1000) + 600 })).toString('base64url')}`;
    const jwt = `${input}.${sign('sha256', Buffer.from(input), rsa.privateKey).toString('base64url')}`;
    const { h, up } = await setup([
      pluginConfig('authz', urls.authz!, { phase: 'AUTHZ', config: { policies: [{ action: 'DENY', rules: [{ to: [{ operation: { paths: ['/admin/*'] } }] }] }] } }),
      pluginConfig('jwt-authn', urls['jwt-authn']!, { phase: 'AUTHN', config: { providers: [{ issuer: 'https://issuer', jwks, claimToHeaders: [{ claim: 'sub', header: 'x-user' }] }] } }),
    ]);
    const ok = await request(`http://127.0.0.1:${h.port}/items`, { headers: { authorization: `Bearer ${jwt}` } });
    expect(ok.statusCode).toBe(200);
    expect(JSON.parse(String(ok.headers['x-upstream-saw']))).toMatchObject({ user: 'alice', auth: null });
    await ok.body.text();
    const missing = await request(`http://127.0.0.1:${h.port}/items`);
    expect(missing.statusCode).toBe(401);
    expect(missing.headers['www-authenticate']).toBe('Bearer realm="http://127.0.0.1:' + h.port + '/items"');
    expect(await missing.body.text()).toBe('Jwt is missing');
    const bad = await request(`http://127.0.0.1:${h.port}/items`, { headers: { authorization: 'Bearer not.a.jwt' } });
    expect(bad.statusCode).toBe(401);
    await bad.body.text();
    const denied = await request(`http://127.0.0.1:${h.port}/admin/users`, { headers: { authorization: `Bearer ${jwt}` } });
    expect(denied.statusCode).toBe(403);
    expect(await denied.body.text()).toBe('RBAC: access denied');
    expect(up.requests).toBe(1);
  });
});
