// Switching a destination between L4 and L7 under load: a plugin attached and detached by config reload while clients keep connecting; no request may fail.
import { afterEach, describe, expect, it } from 'vitest';
import http from 'node:http';
import { fixture, pluginConfig, wasmFileUrl } from '../helpers/wasm-fixtures.js';
import { createTestHost } from '../helpers/wasm-host.js';
import { startWeft, testConfig } from '../helpers/weft-harness.js';
import { startHttpUpstream } from './l7-harness.js';
import { createL7Proxy } from '../../runtime/l7/l7-proxy.js';
import { createWasmPlugins } from '../../runtime/l7/wasm-filter.js';
import { createLogger } from '../../runtime/log.js';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()?.();
});

function get(port: number): Promise<{ status: number; wasm: boolean }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, wasm: res.headers['x-served-by'] === 'weft-wasm' }));
    });
    req.on('error', reject);
  });
}

describe('L4 <-> L7 switch', () => {
  it('attaches and detaches a plugin by reload under load without a failed request', async () => {
    const up = await startHttpUpstream('127.0.0.1', 0, (_req, res) => res.end('ok'));
    cleanups.push(() => up.close());
    const plugin = pluginConfig('add-header', await wasmFileUrl(await fixture('add-header')));
    const raw = (attached: boolean): Record<string, unknown> => ({
      plugins: [plugin],
      workloads: [{ name: 'web-1', addresses: ['127.0.0.1'], labels: { app: 'web' } }],
      services: [{ name: 'web', addresses: ['10.96.0.60'], ports: [{ port: 80, targetPort: up.port, appProtocol: 'http' }], selector: { app: 'web' }, annotations: attached ? { 'weft.dev/plugins': 'add-header' } : {} }],
      localPorts: [{ listen: '127.0.0.1:0', service: 'web.default', port: 80 }],
      accessLog: { enabled: false },
    });
    const w = await startWeft(raw(false));
    cleanups.push(() => w.close());
    const t = createTestHost();
    expect((await t.host.load([plugin])).ok).toBe(true);
    cleanups.push(() => Promise.resolve(t.host.close()));
    const l7 = createL7Proxy({ state: w.app.state, metrics: w.app.metrics, logger: createLogger('l7'), plugins: createWasmPlugins(t.host, () => w.app.state.current.config.plugins), accessLog: { enabled: false } });
    cleanups.push(() => l7.close());
    w.app.setL7Handoff(l7);
    const port = Object.values(w.app.ports.localPorts)[0] as number;

    let stop = false;
    let l4 = 0;
    let viaL7 = 0;
    const failures: string[] = [];
    const worker = async (): Promise<void> => {
      while (!stop) {
        try {
          const r = await get(port);
          if (r.status !== 200) failures.push(`status ${r.status}`);
          else if (r.wasm) viaL7++;
          else l4++;
        } catch (err) {
          failures.push((err as Error).message);
        }
      }
    };
    const workers = Array.from({ length: 8 }, () => worker());
    for (let r = 0; r < 8; r++) {
      await new Promise((res) => setTimeout(res, 120));
      await w.app.reload(testConfig(raw(r % 2 === 0)));
    }
    await new Promise((res) => setTimeout(res, 60));
    stop = true;
    await Promise.all(workers);
    expect(failures).toEqual([]);
    expect(l4).toBeGreaterThan(10);
    expect(viaL7).toBeGreaterThan(10);
    // The last reload detached the plugin: new connections are back on L4.
    expect((await get(port)).wasm).toBe(false);
  });
});
