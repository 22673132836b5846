// `npm run bench`: every side-by-side benchmark in one run, printed as ratios to the direct path and to HAProxy/nginx; results saved under test/bench/results/.
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { benchL4 } from './l4-bench.js';
import { benchL7 } from './l7.js';
import { benchHbone } from './hbone.js';
import { benchWasmHost } from './wasm-host.js';
import { benchPluginCost } from './plugin-cost.js';
import { benchSharedState } from './shared-state.js';
import { benchTwoCore } from './two-core.js';
import { REPO_ROOT, hasCommand } from './bench-tools.js';

const seconds = Number(process.env.WEFT_BENCH_SECONDS ?? 5);
/** `WEFT_BENCH_ONLY=l4,l7` runs a subset: l4, l7, hbone, wasm, plugins, shared-state, two-core. */
const only = new Set((process.env.WEFT_BENCH_ONLY ?? 'l4,l7,hbone,wasm,plugins,shared-state,two-core').split(',').map((s) => s.trim()));

/** The other sections report their own named numbers (ratios included); printed as a two-column table. */
async function section(name: string, title: string, run: () => Promise<Record<string, number>>, results: Record<string, unknown>, lines: string[]): Promise<void> {
  if (!only.has(name)) return;
  process.stderr.write(`[bench] ${title}\n`);
  try {
    const r = await run();
    results[name] = r;
    lines.push('', `## ${title}`, '', '| measure | value |', '|---|---|', ...Object.entries(r).map(([k, v]) => `| ${k} | ${Number.isInteger(v) ? v : v.toFixed(3)} |`));
  } catch (err) {
    results[name] = { error: (err as Error).message };
    lines.push('', `## ${title}`, '', `failed: ${(err as Error).message}`);
  }
}

function ratio(a: number | undefined, b: number | undefined): string {
  return a === undefined || b === undefined || b === 0 ? 'n/a' : `${(a / b).toFixed(2)}×`;
}

async function main(): Promise<void> {
  const missing = [];
  for (const c of ['nginx', 'haproxy', 'wrk', 'iperf3', 'taskset']) if (!(await hasCommand(c))) missing.push(c);
  if (missing.length > 0) throw new Error(`npm run bench needs ${missing.join(', ')} (Debian packages; see .ci/run)`);
  const results: Record<string, unknown> = { date: new Date().toISOString(), seconds };
  const lines: string[] = [];
  if (only.has('l4')) lines.push(...(await l4Section(results)));
  await section('l7', 'L7 (wrk -c32 through weft HTTP with and without a Wasm plugin, nginx and HAProxy HTTP)', () => benchL7({ seconds }), results, lines);
  await section('hbone', 'HBONE (two weft instances, mTLS HTTP/2 CONNECT)', () => benchHbone(), results, lines);
  await section('wasm', 'proxy-wasm host', () => benchWasmHost(), results, lines);
  await section('plugins', 'First-party plugins: CPU µs per request (PluginHost + FilterChain in process), over the plain path, a no-op filter and a hand-written filter', () => benchPluginCost(), results, lines);
  await section('two-core', 'Two cores (weft workers: 2, nginx worker_processes 2, HAProxy nbthread 2, wrk -t2 -c64; one Wasm plugin at L7)', () => benchTwoCore({ seconds }), results, lines);
  await section('shared-state', 'Shared rate limits (Redis strict and local modes)', () => benchSharedState(), results, lines);
  process.stdout.write(lines.join('\n') + '\n');
  const outDir = path.join(REPO_ROOT, 'test/bench/results');
  await mkdir(outDir, { recursive: true });
  await writeFile(path.join(outDir, `bench-${Date.now()}.json`), JSON.stringify(results, null, 2));
  await writeFile(path.join(outDir, 'latest.md'), lines.join('\n') + '\n');
}

async function l4Section(results: Record<string, unknown>): Promise<string[]> {
  const l4 = await benchL4({ seconds, connections: 32 });
  results.l4 = l4;
  const w = l4.wrk;
  return [
    '## L4 (wrk -t1 -c32, keep-alive, tiny responses; iperf3 one stream; every proxy on one core)',
    '',
    '| path | req/s | p50 ms | p99 ms | proxy CPU µs/req | iperf3 Gbit/s |',
    '|---|---|---|---|---|---|',
    ...Object.entries(w).map(([k, v]) => `| ${k} | ${v.rps.toFixed(0)} | ${v.p50ms.toFixed(3)} | ${v.p99ms.toFixed(3)} | ${v.cpuUsPerReq?.toFixed(2) ?? '-'} | ${l4.iperfGbps[k]?.toFixed(1) ?? 'n/a'} |`),
    '',
    '| ratio | value | target |',
    '|---|---|---|',
    `| weft L4 req/s ÷ HAProxy TCP | ${ratio(w['weft-l4']?.rps, w['haproxy-tcp']?.rps)} | ≥ 1.0× |`,
    `| HAProxy TCP CPU per request ÷ weft L4 (req/s per core) | ${ratio(w['haproxy-tcp']?.cpuUsPerReq, w['weft-l4']?.cpuUsPerReq)} | ≥ 1.0× |`,
    `| weft L4 req/s ÷ nginx stream | ${ratio(w['weft-l4']?.rps, w['nginx-stream']?.rps)} | |`,
    `| weft L4 req/s ÷ direct | ${ratio(w['weft-l4']?.rps, w.direct?.rps)} | |`,
    `| HAProxy TCP req/s ÷ direct | ${ratio(w['haproxy-tcp']?.rps, w.direct?.rps)} | (≈0.5× on these machines) |`,
    `| weft L4 throughput ÷ HAProxy TCP | ${ratio(l4.iperfGbps['weft-l4'], l4.iperfGbps['haproxy-tcp'])} | ≥ 0.8× |`,
    `| weft L4 throughput ÷ direct | ${ratio(l4.iperfGbps['weft-l4'], l4.iperfGbps.direct)} | |`,
    `| weft RSS idle | ${l4.memory.weftIdleMb.toFixed(1)} MB | ≤ 60 MB |`,
    `| weft memory per idle connection (${l4.memory.connections} held) | ${l4.memory.weftPerConnKb.toFixed(1)} KB | ≤ 16 KB |`,
    `| HAProxy memory per idle connection | ${l4.memory.haproxyPerConnKb.toFixed(1)} KB | |`,
  ];
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exitCode = 1;
});
