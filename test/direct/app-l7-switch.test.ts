// Attaching a plugin by reload moves a destination from L4 to L7 (and back) under load with no failed request; a plugin that cannot load rejects the whole reload.
import http from 'node:http';
import type net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixture, wasmFileUrl } from '../helpers/wasm-fixtures.js';
import { metricValue, startWeft, testConfig, type WeftUnderTest } from '../helpers/weft-harness.js';

let upstream: http.Server;
let upstreamPort: number;
let w: WeftUnderTest;
let port: number;
let pluginUrl: string;

function meshConfig(annotations: Record<string, string>, url = pluginUrl) {
  return {
    workloads: [{ name: 'web-1', addresses: ['127.0.0.2'], labels: { app: 'web' } }],
    services: [{ name: 'web', addresses: ['10.96.0.30'], ports: [{ port: 80, targetPort: upstreamPort, appProtocol: 'http' }], selector: { app: 'web' }, annotations }],
    plugins: [{ name: 'add-header', url }],
    localPorts: [{ listen: '127.0.0.1:0', service: 'web.default', port: 80 }],
  };
}

/** One request on a fresh connection, so each is routed (L4 or L7) by the config current when it connects. */
function get(): Promise<{ status: number; servedBy: string | undefined; filter: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, servedBy: res.headers['x-served-by'] as string | undefined, filter: body }));
    });
    req.on('error', reject);
  });
}

beforeAll(async () => {
  upstream = http.createServer((req, res) => res.end(String(req.headers['x-wasm-filter'] ?? 'none')));
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.2', r));
  upstreamPort = (upstream.address() as net.AddressInfo).port;
  pluginUrl = await wasmFileUrl(await fixture('add-header'));
  w = await startWeft(meshConfig({}));
  port = Object.values(w.app.ports.localPorts)[0] as number;
});

afterAll(async () => {
  await w.close();
  await new Promise((r) => upstream.close(r));
});

describe('L4 ⇄ L7 by reload', () => {
  it('starts at L4 when nothing is attached', async () => {
    expect(await get()).toEqual({ status: 200, servedBy: undefined, filter: 'none' });
    expect(await w.waitForLog((e) => e.kind === 'tcp' && e.destination_service === 'web.default.svc.cluster.local')).toMatchObject({ route: 'service' });
  });

  it('moves to L7 and back while requests flow, failing none', async () => {
    let stop = false;
    const seen = { l4: 0, l7: 0 };
    const failures: string[] = [];
    const worker = async (): Promise<void> => {
      while (!stop) {
        try {
          const r = await get();
          if (r.status !== 200) failures.push(`status ${r.status}`);
          else if (r.servedBy === 'weft-wasm' && r.filter === 'on') seen.l7++;
          else if (r.servedBy === undefined && r.filter === 'none') seen.l4++;
          else failures.push(JSON.stringify(r));
        } catch (err) {
          failures.push((err as Error).message);
        }
      }
    };
    const workers = Array.from({ length: 8 }, worker);
    const attach: Record<string, string> = { 'weft.dev/plugins': 'add-header' };
    for (const annotations of [attach, {}, attach, {}]) {
      await new Promise((r) => setTimeout(r, 150));
      expect(await w.app.reload(testConfig(meshConfig(annotations)))).toEqual({ ok: true });
    }
    await new Promise((r) => setTimeout(r, 100));
    stop = true;
    await Promise.all(workers);
    expect(failures).toEqual([]);
    expect(seen.l7).toBeGreaterThan(10);
    expect(seen.l4).toBeGreaterThan(10);
    expect(await get()).toEqual({ status: 200, servedBy: undefined, filter: 'none' });
    const text = await w.metrics();
    expect(metricValue(text, 'istio_requests_total', { response_code: '200', destination_service: 'web.default.svc.cluster.local' })).toBeGreaterThan(10);
  });

  it('rejects a reload whose plugin is not Wasm and keeps serving the previous config', async () => {
    const bad = await wasmFileUrl(new Uint8Array([1, 2, 3, 4]), 'bad.wasm');
    const result = await w.app.reload(testConfig(meshConfig({ 'weft.dev/plugins': 'add-header' }, bad)));
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.problems.join()).toMatch(/plugin add-header: /);
    expect(await get()).toEqual({ status: 200, servedBy: undefined, filter: 'none' });
    expect(metricValue(await w.metrics(), 'weft_config_reloads_total', { result: 'rejected' })).toBe(1);
  });
});
