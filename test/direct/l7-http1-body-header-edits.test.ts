// HTTP/1.1 with the parity test plugin: response header edits made in proxy_on_response_body reach the client while the
// head waits for the buffered body, and the plugin sees the client's port, the original destination and the upstream.
import { afterEach, beforeAll, expect, it } from 'vitest';
import net from 'node:net';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { request } from 'undici';
import { createWasmPlugins } from '../../runtime/l7/wasm-filter.js';
import { ensurePluginBuilt } from '../../sdk/testing/ensure-plugin-built.js';
import { pluginConfig } from '../helpers/wasm-fixtures.js';
import { createTestHost } from '../helpers/wasm-host.js';
import { makeConfig, startHttpUpstream, startProxy, type ProxyHarness, type Upstream } from './l7-harness.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});
let url = '';
beforeAll(async () => {
  url = pathToFileURL(await ensurePluginBuilt(fileURLToPath(new URL('../fixtures/h2-parity-plugin/', import.meta.url)))).href;
}, 60_000);

/** An upstream that echoes the request body and `x-req-body-size` it got, behind a proxy running the parity plugin for app:80. */
async function setup(): Promise<{ up: Upstream; h: ProxyHarness }> {
  const up = await startHttpUpstream('127.0.0.1', 0, (req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      res.setHeader('x-upstream-body', body);
      res.setHeader('x-upstream-req-body-size', req.headers['x-req-body-size'] ?? 'absent');
      res.end('response text');
    });
  });
  cleanups.push(() => up.close());
  const plugins = [pluginConfig('parity', url)];
  const t = createTestHost();
  expect((await t.host.load(plugins)).ok).toBe(true);
  cleanups.push(() => Promise.resolve(t.host.close()));
  const config = makeConfig({
    plugins,
    workloads: [{ name: 'app-1', addresses: ['127.0.0.1'], labels: { app: 'app' } }],
    services: [{ name: 'app', addresses: ['10.96.0.90'], ports: [{ port: 80, targetPort: up.port, appProtocol: 'http' }], selector: { app: 'app' }, annotations: { 'weft.dev/plugins': 'parity' } }],
  });
  const h = await startProxy(config, 'app.default', 80, { plugins: createWasmPlugins(t.host, () => plugins) });
  cleanups.push(() => h.close());
  return { up, h };
}

/** A raw connection to the proxy, closed after the test. */
async function dial(port: number): Promise<net.Socket> {
  const sock = net.connect(port, '127.0.0.1');
  cleanups.push(() => Promise.resolve(void sock.destroy()));
  await new Promise((res) => sock.once('connect', res));
  return sock;
}

/** Everything the socket received, once it contains `marker`. */
function readUntil(sock: net.Socket, marker: string): Promise<string> {
  return new Promise((resolve) => {
    let got = '';
    sock.on('data', (d: Buffer) => {
      got += d.toString();
      if (got.includes(marker)) resolve(got);
    });
  });
}

it('forwards response headers a plugin sets in proxy_on_response_body while the body is buffered', async () => {
  const { h } = await setup();
  const r = await request(`http://127.0.0.1:${h.port}/buffer`, { method: 'POST', body: 'hello' });
  // The request side already held its head for the buffered body: the header edit went upstream with the new body.
  expect(r.headers['x-upstream-body']).toBe('<hello>');
  expect(r.headers['x-upstream-req-body-size']).toBe('5');
  expect(r.headers['x-res-body-size']).toBe('13');
  expect(r.headers['content-length']).toBe('13');
  expect(await r.body.text()).toBe('RESPONSE TEXT');
});

it('gives an HTTP/1 plugin source.port, destination.address and upstream.address', async () => {
  const { up, h } = await setup();
  const sock = await dial(h.port);
  const localPort = sock.localPort;
  const reply = readUntil(sock, '\r\n\r\n');
  sock.write('GET /props HTTP/1.1\r\nhost: app\r\n\r\n');
  const text = await reply;
  expect(text).toMatch(/^HTTP\/1\.1 200 /);
  expect(text).toContain(`x-p-source-port: ${localPort}\r\n`);
  expect(text).toContain('x-p-destination-address: 10.96.0.90:80\r\n');
  expect(text).toContain('x-p-destination-port: 80\r\n');
  expect(text).toContain(`x-p-upstream-address: 127.0.0.1:${up.port}\r\n`);
});

it('gives body filters a chunked request body decoded, and sends the buffered result with its length', async () => {
  const { h } = await setup();
  const sock = await dial(h.port);
  const reply = readUntil(sock, 'RESPONSE TEXT');
  sock.write('POST /buffer HTTP/1.1\r\nhost: app\r\ntransfer-encoding: chunked\r\n\r\n3\r\nhel\r\n');
  setTimeout(() => sock.write('2\r\nlo\r\n0\r\n\r\n'), 20);
  const text = await reply;
  expect(text).toMatch(/^HTTP\/1\.1 200 /);
  expect(text).toContain('x-upstream-body: <hello>\r\n');
  expect(text).toContain('x-upstream-req-body-size: 5\r\n');
});
