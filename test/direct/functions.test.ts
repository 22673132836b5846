// Functions as mesh services: JS components built with componentize-js, served by weft itself in worker threads,
// reached by name, VIP and local port through the L7 path, with the serverless lifecycle, limits and metrics.
import http from 'node:http';
import type net from 'node:net';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixtureBuildDir, functionFixture, type FunctionFixture } from '../helpers/function-fixtures.js';
import { fixture, wasmFileUrl } from '../helpers/wasm-fixtures.js';
import { metricValue, startWeft, type WeftUnderTest } from '../helpers/weft-harness.js';

let w: WeftUnderTest;
let hello: FunctionFixture;
let lab: FunctionFixture;
let plain: http.Server;
let plainPort: number;

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** Absolute-form HTTP through weft's explicit proxy (what `curl -x` sends). */
function viaProxy(url: string, init: { method?: string; body?: Buffer | string; headers?: Record<string, string> } = {}): Promise<Answer> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: w.app.ports.explicitProxy, method: init.method ?? 'GET', path: url, headers: { host: u.host, ...init.headers }, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(init.body);
  });
}

async function metric(name: string, labels: Record<string, string>): Promise<number> {
  return metricValue(await w.metrics(), name, labels);
}

async function eventually(check: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}

beforeAll(async () => {
  // The fixtures' transpile cache outlives the run (admission from a fresh cache is covered in functions-admission.test.ts).
  process.env.WEFT_CACHE_DIR = join(fixtureBuildDir(), 'cache');
  [hello, lab] = await Promise.all([functionFixture('hello'), functionFixture('lab')]);
  plain = http.createServer((req, res) => res.end('plain'));
  await new Promise<void>((r) => plain.listen(0, '127.0.0.51', r));
  plainPort = (plain.address() as net.AddressInfo).port;
  w = await startWeft({
    workloads: [{ name: 'plain-1', addresses: ['127.0.0.51'], labels: { app: 'plain' } }],
    services: [{ name: 'plain', addresses: ['10.96.0.51'], ports: [{ port: 80, targetPort: plainPort, appProtocol: 'http' }], selector: { app: 'plain' }, annotations: { 'weft.dev/plugins': 'add-header' } }],
    plugins: [{ name: 'add-header', url: await wasmFileUrl(await fixture('add-header')) }],
    functions: [
      { name: 'hello', namespace: 'fns', url: hello.url, sha256: hello.sha256, addresses: ['10.96.0.80'] },
      { name: 'lab', namespace: 'fns', url: lab.url, sha256: lab.sha256, limits: { cpuMs: 300, timeoutMs: 3_000, memoryMb: 64, maxInstances: 2, maxQueue: 2, idleTimeoutMs: 60_000 } },
      { name: 'slow', namespace: 'fns', url: lab.url, limits: { maxInstances: 1, maxQueue: 2, idleTimeoutMs: 60_000 } },
      { name: 'brief', namespace: 'fns', url: hello.url, limits: { idleTimeoutMs: 300, moduleIdleTimeoutMs: 600 } },
    ],
    localPorts: [{ listen: '127.0.0.1:0', service: 'hello.fns', port: 80 }],
  });
}, 900_000);

afterAll(async () => {
  await w?.close();
  await new Promise((r) => plain?.close(r));
});

describe('a 10-line JS function as a mesh service', () => {
  it('answers by service name, by FQDN, by VIP and through a local port', async () => {
    const first = await viaProxy('http://hello.fns/by-name');
    if (first.status !== 200) console.log(JSON.stringify(w.logs.filter((l) => l.fn !== undefined)));
    expect(first).toMatchObject({ status: 200, body: 'hello from /by-name\n' });
    expect(await viaProxy('http://hello.fns.svc.cluster.local:80/fqdn')).toMatchObject({ status: 200, body: 'hello from /fqdn\n' });
    expect(await viaProxy('http://10.96.0.80/vip')).toMatchObject({ status: 200, body: 'hello from /vip\n' });
    const port = Object.values(w.app.ports.localPorts)[0] as number;
    const res = await fetch(`http://127.0.0.1:${port}/local?q=1`);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('hello from /local?q=1\n');
    // The L7 path served them: access-log lines and Istio metrics name the function's service.
    const line = await w.waitForLog((e) => e.path === '/vip');
    expect(line).toMatchObject({ response_code: 200, destination_service: 'hello.fns.svc.cluster.local' });
    expect(await metric('weft_fn_requests_total', { fn: 'hello.fns', code: '200' })).toBeGreaterThanOrEqual(4);
  });
});
