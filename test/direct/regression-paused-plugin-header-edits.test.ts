// Regression: header edits a plugin makes after pausing (call out, then add a header on resume) were dropped by the L7 adapter.
import http from 'node:http';
import type net from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { fixture, wasmFileUrl } from '../helpers/wasm-fixtures.js';
import { startWeft, type WeftUnderTest } from '../helpers/weft-harness.js';

let web: http.Server;
let auth: http.Server;
let w: WeftUnderTest;

beforeAll(async () => {
  web = http.createServer((req, res) => res.end(`x-auth-result=${String(req.headers['x-auth-result'])}`));
  auth = http.createServer((_req, res) => res.setHeader('x-auth', 'allowed').end());
  await new Promise<void>((r) => web.listen(0, '127.0.0.2', r));
  await new Promise<void>((r) => auth.listen(0, '127.0.0.3', r));
  w = await startWeft({
    workloads: [
      { name: 'web-1', addresses: ['127.0.0.2'], labels: { app: 'web' } },
      { name: 'auth-1', addresses: ['127.0.0.3'], labels: { app: 'auth' } },
    ],
    services: [
      { name: 'web', addresses: ['10.96.0.30'], ports: [{ port: 80, targetPort: (web.address() as net.AddressInfo).port, appProtocol: 'http' }], selector: { app: 'web' }, annotations: { 'weft.dev/plugins': 'callout' } },
      { name: 'auth', addresses: ['10.96.0.31'], ports: [{ port: 80, targetPort: (auth.address() as net.AddressInfo).port }], selector: { app: 'auth' } },
    ],
    plugins: [{ name: 'callout', url: await wasmFileUrl(await fixture('callout')) }],
    localPorts: [{ listen: '127.0.0.1:0', service: 'web.default', port: 80 }],
  });
});

afterAll(async () => {
  await w.close();
  await new Promise((r) => web.close(r));
  await new Promise((r) => auth.close(r));
});

it('forwards a header the plugin added when it resumed after its callout', async () => {
  const port = Object.values(w.app.ports.localPorts)[0] as number;
  const body = await new Promise<string>((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve(text));
    }).on('error', reject);
  });
  expect(body).toBe('x-auth-result=allowed');
});
