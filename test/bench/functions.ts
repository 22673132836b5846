// Function benchmark (indicative): a JS function (componentize-js) served by weft next to the plain L7 path in one
// in-process weft: cold start (module not in memory), warm-cold (module compiled, no instance), warm p50/p99 and
// req/s with wrk, memory of a warm instance, RSS after scale to zero against the baseline; and a component filter's
// per-request cost next to the proxy-wasm filter doing the same header edit (test/fixtures/wasm/add-header.wat).
// Run: flock /tmp/weft-bench.lock npx tsx --expose-gc test/bench/functions.ts
import http from 'node:http';
import type net from 'node:net';
import { join } from 'node:path';
import { fixtureBuildDir, functionFixture } from '../helpers/function-fixtures.js';
import { fixture, wasmFileUrl } from '../helpers/wasm-fixtures.js';
import { metricValue, startWeft } from '../helpers/weft-harness.js';
import { runWrk } from './bench-tools.js';

const SECONDS = Number(process.env.WEFT_BENCH_SECONDS ?? 5);
const rssMb = (): number => process.memoryUsage().rss / 1048576;
const gc = (): void => (globalThis as { gc?: () => void }).gc?.();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

process.env.WEFT_CACHE_DIR = join(fixtureBuildDir(), 'cache');
const hello = await functionFixture('hello');
const headerFilter = await functionFixture('header-filter', 'http-filter');
const addHeaderUrl = await wasmFileUrl(await fixture('add-header'));
const origin = http.createServer((_req, res) => res.end('ok\n'));
await new Promise<void>((r) => origin.listen(0, '127.0.0.61', r));
const originPort = (origin.address() as net.AddressInfo).port;
const w = await startWeft({
  accessLog: { enabled: false },
  workloads: [{ name: 'origin', addresses: ['127.0.0.61'], labels: { app: 'origin' } }],
  services: [
    { name: 'origin', ports: [{ port: 80, targetPort: originPort, appProtocol: 'http' }], selector: { app: 'origin' } },
    { name: 'wasm', ports: [{ port: 80, targetPort: originPort, appProtocol: 'http' }], selector: { app: 'origin' }, annotations: { 'weft.dev/plugins': 'add-header' } },
    { name: 'comp', ports: [{ port: 80, targetPort: originPort, appProtocol: 'http' }], selector: { app: 'origin' }, annotations: { 'weft.dev/plugins': 'header-filter' } },
  ],
  // A route makes the origin an L7 destination without any filter: the plain L7 path.
  routes: [{ host: 'origin.default', http: [{ name: 'all' }] }],
  plugins: [
    { name: 'add-header', url: addHeaderUrl },
    { name: 'header-filter', url: headerFilter.url, sha256: headerFilter.sha256, limits: { cpuMs: 1000, memoryMb: 64 } },
  ],
  functions: [{ name: 'hello', namespace: 'bench', url: hello.url, sha256: hello.sha256, limits: { idleTimeoutMs: 400, moduleIdleTimeoutMs: 800, maxInstances: 2, cpuMs: 1000 } }],
  localPorts: [
    { listen: '127.0.0.1:0', service: 'origin.default', port: 80 },
    { listen: '127.0.0.2:0', service: 'hello.bench', port: 80 },
    { listen: '127.0.0.3:0', service: 'wasm.default', port: 80 },
    { listen: '127.0.0.4:0', service: 'comp.default', port: 80 },
  ],
});
// localPorts are keyed by their listen address.
const lp = w.app.ports.localPorts;
const [plainPort, fnPort, wasmPort, compPort] = ['127.0.0.1:0', '127.0.0.2:0', '127.0.0.3:0', '127.0.0.4:0'].map((k) => lp[k] as number) as [number, number, number, number];
const metric = async (name: string, labels: Record<string, string> = { fn: 'hello.bench' }): Promise<number> => metricValue(await w.metrics(), name, labels);
const timed = async (port: number): Promise<number> => {
  const t0 = performance.now();
  const res = await fetch(`http://127.0.0.${port === fnPort ? 2 : 1}:${port}/`);
  await res.text();
  return performance.now() - t0;
};
const untilZero = async (): Promise<void> => {
  while ((await metric('weft_fn_instances')) > 0 || (await metric('weft_fn_modules_loaded')) > 0) await sleep(100);
};

gc();
const baselineRss = rssMb();
const cold: number[] = [];
const warmCold: number[] = [];
for (let i = 0; i < 3; i++) {
  await untilZero();
  cold.push(await timed(fnPort)); // module dropped: compile + instantiate + request
  while ((await metric('weft_fn_instances')) > 0) await sleep(50);
  warmCold.push(await timed(fnPort)); // module in memory, no instance
}
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
await timed(fnPort);
const warmInstanceBytes = await metric('weft_fn_instance_memory_bytes');
gc();
const warmRss = rssMb();
const plain1 = await runWrk(`http://127.0.0.1:${plainPort}/`, SECONDS, 1);
const fn1 = await runWrk(`http://127.0.0.2:${fnPort}/`, SECONDS, 1);
const plain8 = await runWrk(`http://127.0.0.1:${plainPort}/`, SECONDS, 8);
const fn8 = await runWrk(`http://127.0.0.2:${fnPort}/`, SECONDS, 8);
// Filters, interleaved with a plain run so the machine's drift shows: one connection, the cost is 1/rps - 1/rps(plain).
const plainF = await runWrk(`http://127.0.0.1:${plainPort}/`, SECONDS, 1);
const wasmF = await runWrk(`http://127.0.0.3:${wasmPort}/`, SECONDS, 1);
const compF = await runWrk(`http://127.0.0.4:${compPort}/`, SECONDS, 1);
const plainF2 = await runWrk(`http://127.0.0.1:${plainPort}/`, SECONDS, 1);
const plainRps = (plainF.rps + plainF2.rps) / 2;
const costUs = (rps: number): number => (1 / rps - 1 / plainRps) * 1e6;
await untilZero();
gc();
await sleep(500);
gc();
const zeroRss = rssMb();

const row = (name: string, r: Awaited<ReturnType<typeof runWrk>>): string => `| ${name} | ${Math.round(r.rps)} | ${r.p50ms.toFixed(3)} | ${r.p99ms.toFixed(3)} | ${r.errors} |`;
process.stdout.write(
  [
    `cold start (module not in memory): median ${median(cold).toFixed(0)} ms (${cold.map((x) => x.toFixed(0)).join(', ')})`,
    `warm-cold start (module compiled, no instance): median ${median(warmCold).toFixed(0)} ms (${warmCold.map((x) => x.toFixed(0)).join(', ')})`,
    '',
    '| path | req/s | p50 ms | p99 ms | errors |',
    '|---|---|---|---|---|',
    row('plain L7, 1 connection', plain1),
    row('JS function, 1 connection', fn1),
    row('plain L7, 8 connections', plain8),
    row('JS function, 8 connections (2 instances)', fn8),
    '',
    `function ÷ plain L7 req/s: ${(fn1.rps / plain1.rps).toFixed(3)}× (1 connection), ${(fn8.rps / plain8.rps).toFixed(3)}× (8 connections)`,
    '',
    '| filter (same header edit, 1 connection) | req/s | p50 ms | p99 ms | errors |',
    '|---|---|---|---|---|',
    row('plain L7 (before)', plainF),
    row('proxy-wasm add-header (WAT)', wasmF),
    row('component filter (JS, componentize-js)', compF),
    row('plain L7 (after)', plainF2),
    `added cost per request: proxy-wasm ${costUs(wasmF.rps).toFixed(1)} µs, component filter ${costUs(compF.rps).toFixed(1)} µs (${(costUs(compF.rps) / Math.max(0.1, costUs(wasmF.rps))).toFixed(1)}× the proxy-wasm cost); component ÷ proxy-wasm req/s ${(compF.rps / wasmF.rps).toFixed(3)}×`,
    `warm instance linear memory: ${(warmInstanceBytes / 1048576).toFixed(1)} MiB; process RSS baseline ${baselineRss.toFixed(0)} MiB, with warm instances ${warmRss.toFixed(0)} MiB, after scale to zero ${zeroRss.toFixed(0)} MiB`,
    '',
  ].join('\n'),
);
await w.close();
origin.close();
