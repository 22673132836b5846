// Two-core section: every peer gets both cores (weft `workers: 2`, nginx `worker_processes 2`, HAProxy `nbthread 2`) and
// wrk runs `-t2` beside them, as do the origin's two nginx workers: L4 req/s against HAProxy TCP, L7 with one Wasm
// plugin against nginx, weft's and nginx's scaling from one worker to two (req/s and CPU µs per request), and idle RSS per worker.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { cpuSecondsOfTree, renderTemplate, rssKb, runWrk, startPeer, withPeer, type Peer, type WrkLoad } from './bench-tools.js';
import { nginxConf, writeConf } from './l7.js';
import { progress, startWeft, writeWeftConfig } from './l4-bench.js';
import { freePort } from '../helpers/free-port.js';
import { fixture, pluginConfig, wasmFileUrl } from '../helpers/wasm-fixtures.js';

const BOTH = '0,1';
const LOAD: WrkLoad = { cpus: BOTH, threads: 2, cpuTimes: true };
/** Twice the one-core sections' 32, so each wrk thread keeps 32 connections busy. */
const CONNECTIONS = 64;
/** Each weft worker thread JIT-compiles the same hot functions on half the requests, so steady state comes later than on one core; every peer gets the same warm-up. */
const WARM_UP_SECONDS = 3;
/**
 * Two workers, wrk's two threads and the origin's two share two cores, so one run moves by ±10 % with the scheduler
 * (measured: an L4 ratio from 0.85× to 0.98× within minutes, no code changed). The peers are measured in interleaved
 * rounds and each reports its median round: the best round favoured whichever peer the scheduler treated best once.
 */
const ROUNDS = Number(process.env.WEFT_BENCH_TWO_CORE_ROUNDS ?? 3);
/**
 * A run during which other processes (another build, another bench) took more than this share of the two cores is
 * measured again, up to RETRIES times, keeping the least disturbed: the scheduler shares CPU per runnable thread, so a
 * foreign load favours the peer with more threads (weft `workers: 1` did 35–45 % less than `workers: 2` under one,
 * and within ±10 % of it without).
 */
const MAX_FOREIGN_PCT = 10;
const RETRIES = 2;

/** The machine's busy and total CPU seconds so far (/proc/stat's first line; idle and iowait are not busy). */
async function machineCpu(): Promise<{ busy: number; total: number }> {
  const ticks = (await readFile('/proc/stat', 'utf8')).split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = ticks.reduce((a, b) => a + b, 0);
  const hz = Number(process.env.WEFT_CLK_TCK ?? 100);
  return { busy: (total - (ticks[3] ?? 0) - (ticks[4] ?? 0)) / hz, total: total / hz };
}

/** Each peer's runs over the rounds; `median()` gives every peer's median run by req/s, that run's other numbers with it. */
function roundsOf(): { add: (name: string, run: Record<string, number>) => void; median: () => Record<string, number> } {
  const runs = new Map<string, Record<string, number>[]>();
  return {
    add: (name, run) => runs.set(name, [...(runs.get(name) ?? []), run]),
    median: () => {
      const out: Record<string, number> = {};
      for (const [name, list] of runs) {
        const sorted = [...list].sort((a, b) => (a[`${name}_rps`] ?? 0) - (b[`${name}_rps`] ?? 0));
        Object.assign(out, sorted[Math.floor((sorted.length - 1) / 2)]);
        out[`${name}_best_rps`] = sorted.at(-1)?.[`${name}_rps`] ?? NaN;
        out[`${name}_worst_rps`] = sorted[0]?.[`${name}_rps`] ?? NaN;
      }
      return out;
    },
  };
}

/** The one-core HAProxy TCP config with two threads. */
async function haproxyTcpConf(dir: string, port: number, upstream: string): Promise<string> {
  const file = await renderTemplate('haproxy-tcp.cfg', dir, { PORT: port, UPSTREAM: upstream });
  await writeFile(file, (await readFile(file, 'utf8')).replace('nbthread 1', 'nbthread 2'));
  return file;
}

/** weft on both cores with `workers` event loops: L4, or L7 through the add-header Wasm plugin attached to the service. */
async function weftPeer(dir: string, name: string, port: number, originPort: number, workers: number, plugin: string | undefined): Promise<Peer> {
  const extra: Record<string, unknown> = { workers, accessLog: { enabled: false } };
  if (plugin !== undefined) {
    extra.plugins = [pluginConfig('add-header', plugin)];
    extra.services = [{ name: 'origin', addresses: ['10.96.0.1'], ports: [{ port: 80, targetPort: originPort, appProtocol: 'http' }], selector: { app: 'origin' }, annotations: { 'weft.dev/plugins': 'add-header' } }];
  }
  const config = await writeWeftConfig(dir, name, port, originPort, extra);
  return startWeft(name, config, port, BOTH);
}

export async function benchTwoCore(opts: { seconds: number }): Promise<Record<string, number>> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'weft-bench-2core-'));
  const out: Record<string, number> = {};
  const originPort = await freePort();
  const origin = await startPeer('origin', originPort, ['nginx', '-c', await writeConf(dir, 'origin.conf', nginxConf(dir, originPort, undefined, { workers: 2 })), '-p', dir], BOTH);
  const upstream = `127.0.0.1:${originPort}`;
  const plugin = await wasmFileUrl(await fixture('add-header'));
  /**
   * One wrk run after a warm-up: req/s, p99, the CPU per request of the proxy, of the load (wrk and the origin) and of all
   * three, and the share of both cores every other process took (`foreign_pct`).
   */
  const once = async (name: string, port: number, peer?: Peer): Promise<Record<string, number>> => {
    await runWrk(`http://127.0.0.1:${port}/`, WARM_UP_SECONDS, CONNECTIONS, [], LOAD);
    const cpu = async (): Promise<[number, number, { busy: number; total: number }]> => [peer?.process.pid === undefined ? 0 : await cpuSecondsOfTree(peer.process.pid), await cpuSecondsOfTree(origin.process.pid as number), await machineCpu()];
    const [proxy0, origin0, machine0] = await cpu();
    const r = await runWrk(`http://127.0.0.1:${port}/`, opts.seconds, CONNECTIONS, [], LOAD);
    const [proxy1, origin1, machine1] = await cpu();
    const perReq = (seconds: number): number => (r.requests > 0 ? seconds * 1e6 / r.requests : NaN);
    const ours = proxy1 - proxy0 + (origin1 - origin0) + (r.wrkCpuSeconds ?? 0);
    const run: Record<string, number> = {
      [`${name}_rps`]: r.rps,
      [`${name}_p99_ms`]: r.p99ms,
      [`${name}_errors`]: r.errors,
      [`${name}_load_cpu_us_per_req`]: perReq(origin1 - origin0 + (r.wrkCpuSeconds ?? 0)),
      [`${name}_all_cpu_us_per_req`]: perReq(ours),
      [`${name}_foreign_pct`]: Math.max(0, machine1.busy - machine0.busy - ours) * 100 / (machine1.total - machine0.total),
    };
    if (peer !== undefined) run[`${name}_cpu_us_per_req`] = perReq(proxy1 - proxy0);
    return run;
  };
  const rounds = roundsOf();
  const measure = async (name: string, port: number, peer?: Peer): Promise<void> => {
    let kept: Record<string, number> | undefined;
    for (let attempt = 0; attempt <= RETRIES; attempt++) {
      progress(`two cores: wrk -t2 -c${CONNECTIONS} ${name}${attempt > 0 ? ` (again: other processes took ${kept?.[`${name}_foreign_pct`]?.toFixed(0)} % of the cores)` : ''}`);
      const run = await once(name, port, peer);
      if (kept === undefined || (run[`${name}_foreign_pct`] ?? 0) < (kept[`${name}_foreign_pct`] ?? 0)) kept = run;
      if ((kept[`${name}_foreign_pct`] ?? 0) <= MAX_FOREIGN_PCT) break;
    }
    rounds.add(name, kept!);
  };
  try {
    await measure('direct', originPort);
    for (let round = 0; round < ROUNDS; round++) {
      const p1 = await freePort();
      await withPeer(startPeer('haproxy-tcp-2', p1, ['haproxy', '-f', await haproxyTcpConf(dir, p1, upstream), '-db'], BOTH), (peer) => measure('haproxy_tcp', p1, peer));
      for (const workers of [1, 2]) {
        const p = await freePort();
        await withPeer(weftPeer(dir, `weft-l4-w${workers}`, p, originPort, workers, undefined), (peer) => measure(`weft_l4_w${workers}`, p, peer));
      }
      // nginx with one worker too: the same setting's scaling for a proxy whose per-request cost is not in question.
      for (const workers of [2, 1]) {
        const p2 = await freePort();
        const name = workers === 2 ? 'nginx_http' : 'nginx_http_w1';
        await withPeer(startPeer(`nginx-http-${workers}`, p2, ['nginx', '-c', await writeConf(dir, `nginx-http-${workers}.conf`, nginxConf(dir, p2, upstream, { workers })), '-p', dir], BOTH), (peer) => measure(name, p2, peer));
      }
      for (const workers of [1, 2]) {
        const p = await freePort();
        await withPeer(weftPeer(dir, `weft-l7-w${workers}`, p, originPort, workers, plugin), (peer) => measure(`weft_l7_wasm_w${workers}`, p, peer));
      }
    }
    Object.assign(out, rounds.median());
    // Idle RSS: one worker, then more; the difference is what each extra event loop costs.
    for (const workers of [1, 2, 4]) {
      const p = await freePort();
      out[`weft_idle_rss_w${workers}_mb`] = await withPeer(weftPeer(dir, `weft-idle-w${workers}`, p, originPort, workers, undefined), async (peer) => {
        await new Promise((r) => setTimeout(r, 1_000));
        return (await rssKb(peer.process.pid as number)) / 1024;
      });
    }
  } finally {
    await origin.stop();
    await rm(dir, { recursive: true, force: true });
  }
  const ratio = (a: number | undefined, b: number | undefined): number => (a === undefined || b === undefined || b === 0 ? NaN : a / b);
  out.l4_w2_vs_haproxy_tcp_rps = ratio(out.weft_l4_w2_rps, out.haproxy_tcp_rps);
  out.l7_wasm_w2_vs_nginx_rps = ratio(out.weft_l7_wasm_w2_rps, out.nginx_http_rps);
  out.l4_scaling_w1_to_w2_rps = ratio(out.weft_l4_w2_rps, out.weft_l4_w1_rps);
  out.l7_scaling_w1_to_w2_rps = ratio(out.weft_l7_wasm_w2_rps, out.weft_l7_wasm_w1_rps);
  out.nginx_scaling_w1_to_w2_rps = ratio(out.nginx_http_rps, out.nginx_http_w1_rps);
  // Both cores are busy with the proxy, wrk and the origin, so req/s follows the CPU all three spend per request.
  out.l7_wasm_w2_vs_nginx_cpu_efficiency = ratio(out.nginx_http_cpu_us_per_req, out.weft_l7_wasm_w2_cpu_us_per_req);
  out.l7_wasm_w2_vs_nginx_all_cpu_efficiency = ratio(out.nginx_http_all_cpu_us_per_req, out.weft_l7_wasm_w2_all_cpu_us_per_req);
  out.weft_extra_worker_mb = ((out.weft_idle_rss_w4_mb ?? NaN) - (out.weft_idle_rss_w1_mb ?? NaN)) / 3;
  return out;
}
