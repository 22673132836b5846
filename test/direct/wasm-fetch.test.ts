// Fetching plugins the ways Istio's WasmPlugin does: oci:// from a real registry (Wasm artifact pushed over the
// distribution API, container image pushed with skopeo), https:// from a local TLS server with a self-signed CA,
// sha256 checks, and an unreachable registry or server leaving the cached version serving.
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { PluginConfig } from '../../runtime/config/config-schema.js';
import { sha256Hex } from '../../runtime/wasm/plugin-loader.js';
import { requireCommands } from '../helpers/requirements.js';
import { fixture, pluginConfig } from '../helpers/wasm-fixtures.js';
import { type TestHost, createTestHost } from '../helpers/wasm-host.js';
import { type Registry, pushWasmArtifact, skopeoPush, startRegistry, writeImageLayout } from '../helpers/wasm-registry.js';

let hosts: TestHost[] = [];
let registry: Registry | undefined;
let server: Server | undefined;
afterEach(async () => {
  for (const h of hosts) h.host.close();
  hosts = [];
  await registry?.stop();
  registry = undefined;
  await new Promise<void>((resolve) => (server === undefined ? resolve() : server.close(() => resolve())));
  server = undefined;
});

function host(options: Parameters<typeof createTestHost>[0] = {}): TestHost {
  const h = createTestHost(options);
  hosts.push(h);
  return h;
}

function servesHeader(t: TestHost, name: string): void {
  const chain = t.host.createStream([name]);
  const headers: [string, string][] = [[':path', '/']];
  expect(chain.onRequestHeaders(headers, true)).toEqual({ kind: 'continue' });
  expect(headers).toContainEqual(['x-wasm-filter', 'on']);
  chain.done();
}

async function expectLoad(t: TestHost, configs: PluginConfig[]): Promise<void> {
  const r = await t.host.load(configs);
  expect(r.ok ? 'ok' : r.problems.map((p) => p.reason).join('; ')).toBe('ok');
}

describe('oci://', () => {
  it('pulls a Wasm OCI artifact and verifies sha256 against the manifest digest or the module', async (ctx) => {
    requireCommands(ctx, 'docker-registry');
    registry = await startRegistry();
    const wasm = await fixture('add-header');
    const digest = await pushWasmArtifact(registry.host, 'plugins/add', 'v1', wasm);
    const t = host();
    await expectLoad(t, [pluginConfig('add', `oci://${registry.host}/plugins/add:v1`)]);
    servesHeader(t, 'add');
    await expectLoad(t, [pluginConfig('add', `oci://${registry.host}/plugins/add:v1`, { sha256: digest })]);
    await expectLoad(t, [pluginConfig('add', `oci://${registry.host}/plugins/add@sha256:${digest}`, { sha256: sha256Hex(wasm) })]);
    const wrong = await t.host.load([pluginConfig('add', `oci://${registry.host}/plugins/add:v1`, { sha256: 'b'.repeat(64), config: 'x' })]);
    expect(wrong.ok).toBe(false);
    if (!wrong.ok) expect(wrong.problems[0]!.reason).toMatch(/sha256 mismatch/);
    const missing = await t.host.load([pluginConfig('other', `oci://${registry.host}/plugins/none:v1`)]);
    expect(missing.ok).toBe(false);
    if (!missing.ok) expect(missing.problems[0]!.reason).toMatch(/registry answered 404/);
    servesHeader(t, 'add');
  });

  it('pulls the container-image layout (plugin.wasm in a gzipped layer) pushed with skopeo', async (ctx) => {
    requireCommands(ctx, 'docker-registry', 'skopeo');
    registry = await startRegistry();
    const wasm = await fixture('add-header');
    const layout = await writeImageLayout(wasm, 'v2');
    await skopeoPush(layout, 'v2', `${registry.host}/plugins/image:v2`);
    const t = host();
    await expectLoad(t, [pluginConfig('img', `oci://${registry.host}/plugins/image:v2`, { sha256: sha256Hex(wasm) })]);
    servesHeader(t, 'img');
  });

  it('an unreachable registry leaves the cached version serving, across a restart too', async (ctx) => {
    requireCommands(ctx, 'docker-registry');
    registry = await startRegistry();
    const wasm = await fixture('add-header');
    await pushWasmArtifact(registry.host, 'plugins/add', 'latest', wasm);
    const url = `oci://${registry.host}/plugins/add`;
    const cacheDir = await mkdtemp(join(tmpdir(), 'weft-plugin-cache-'));
    const t = host({ cacheDir });
    await expectLoad(t, [pluginConfig('add', url)]);
    await registry.stop();
    registry = undefined;
    // A config change makes the host fetch again; the registry is gone, the cached module serves.
    await expectLoad(t, [pluginConfig('add', url, { config: { v: 2 } })]);
    servesHeader(t, 'add');
    // A new process with the same cache directory also comes up on the cached version.
    const restarted = host({ cacheDir });
    await expectLoad(restarted, [pluginConfig('add', url)]);
    servesHeader(restarted, 'add');
    // Nothing cached for this URL: refused with the reason, the running plugin untouched.
    const r = await restarted.host.load([pluginConfig('add', url), pluginConfig('new', url.replace('plugins/add', 'plugins/new'))]);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.problems).toEqual([{ plugin: 'new', reason: expect.stringMatching(/registry unreachable/) as string }]);
    servesHeader(restarted, 'add');
    expect(await restarted.metrics.render()).toMatch(/weft_plugin_fetches_total\{plugin="add",source="cache"\} 1/);
  });
});

describe('https://', () => {
  async function tlsServer(wasm: Uint8Array): Promise<{ url: string; cert: string }> {
    const dir = await mkdtemp(join(tmpdir(), 'weft-tls-'));
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1',
      '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' });
    const cert = await readFile(join(dir, 'cert.pem'), 'utf8');
    const key = await readFile(join(dir, 'key.pem'), 'utf8');
    server = createServer({ cert, key }, (req, res) => {
      if (req.url === '/plugin.wasm') res.end(wasm);
      else res.writeHead(404).end();
    });
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
    return { url: `https://127.0.0.1:${(server.address() as { port: number }).port}`, cert };
  }

  it('fetches from a TLS server whose CA is configured, checks sha256, and refuses an untrusted one', async (ctx) => {
    requireCommands(ctx, 'openssl');
    const wasm = await fixture('add-header');
    const { url, cert } = await tlsServer(wasm);
    const t = host({ fetch: { ca: cert } });
    await expectLoad(t, [pluginConfig('add', `${url}/plugin.wasm`, { sha256: sha256Hex(wasm) })]);
    servesHeader(t, 'add');
    const notFound = await t.host.load([pluginConfig('add', `${url}/missing.wasm`)]);
    expect(notFound.ok).toBe(false);
    if (!notFound.ok) expect(notFound.problems[0]!.reason).toMatch(/server answered 404/);
    const mismatch = await t.host.load([pluginConfig('add', `${url}/plugin.wasm`, { sha256: 'c'.repeat(64) })]);
    expect(mismatch.ok).toBe(false);
    const untrusted = host();
    const r = await untrusted.host.load([pluginConfig('add', `${url}/plugin.wasm`)]);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.problems[0]!.reason).toMatch(/certificate/);
    servesHeader(t, 'add');
  });
});
