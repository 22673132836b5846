// Two-core section: every peer gets both cores (weft `workers: 2`, nginx `worker_processes 2`, HAProxy `nbthread 2`) and
// wrk runs `-t2` beside them, as do the origin's two nginx workers: L4 req/s against HAProxy TCP, L7 with one Wasm
// plugin against nginx, weft's scaling from one worker to two (req/s and CPU µs per request), and idle RSS per worker.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { bestOfRounds, cpuSecondsOfTree, renderTemplate, rssKb, runWrk, startPeer, withPeer, type Peer, type WrkLoad } from './bench-tools.js';
import { nginxConf, writeConf } from './l7.js';
import { progress, startWeft, writeWeftConfig } from './l4-bench.js';
import { freePort } from '../helpers/free-port.js';
import { fixture, pluginConfig, wasmFileUrl } from '../helpers/wasm-fixtures.js';

const BOTH = '0,1';
const LOAD: WrkLoad = { cpus: BOTH, threads: 2 };
/** Twice the one-core sections' 32, so each wrk thread keeps 32 connections busy. */
const CONNECTIONS = 64;
/** Each weft worker thread JIT-compiles the same hot functions on half the requests, so steady state comes later than on one core; every peer gets the same warm-up. */
const WARM_UP_SECONDS = 3;
/**
 * Two workers, wrk's two threads and the origin's two share two cores, so one run moves by ±10 % with the scheduler
 * (measured: an L4 ratio from 0.85× to 0.98× within minutes, no code changed). The peers are measured in interleaved
 * rounds, best of each, as the one-core plugin rows are.
 */
const ROUNDS = Number(process.env.WEFT_BENCH_TWO_CORE_ROUNDS ?? 3);

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
  const measure = async (name: string, port: number, peer?: Peer): Promise<void> => {
    progress(`two cores: wrk -t2 -c${CONNECTIONS} ${name}`);
    await runWrk(`http://127.0.0.1:${port}/`, WARM_UP_SECONDS, CONNECTIONS, [], LOAD);
    const pid = peer?.process.pid;
    const before = pid === undefined ? 0 : await cpuSecondsOfTree(pid);
    const r = await runWrk(`http://127.0.0.1:${port}/`, opts.seconds, CONNECTIONS, [], LOAD);
    out[`${name}_rps`] = r.rps;
    out[`${name}_p99_ms`] = r.p99ms;
    out[`${name}_errors`] = r.errors;
    if (pid !== undefined && r.requests > 0) out[`${name}_cpu_us_per_req`] = ((await cpuSecondsOfTree(pid)) - before) * 1e6 / r.requests;
  };
  try {
    await measure('direct', originPort);
    const best = bestOfRounds(out);
    for (let round = 0; round < ROUNDS; round++) {
      const p1 = await freePort();
      await withPeer(startPeer('haproxy-tcp-2', p1, ['haproxy', '-f', await haproxyTcpConf(dir, p1, upstream), '-db'], BOTH), (peer) => measure('haproxy_tcp', p1, peer));
      best.keep('haproxy_tcp');
      for (const workers of [1, 2]) {
        const p = await freePort();
        await withPeer(weftPeer(dir, `weft-l4-w${workers}`, p, originPort, workers, undefined), (peer) => measure(`weft_l4_w${workers}`, p, peer));
        best.keep(`weft_l4_w${workers}`);
      }
      const p2 = await freePort();
      await withPeer(startPeer('nginx-http-2', p2, ['nginx', '-c', await writeConf(dir, 'nginx-http-2.conf', nginxConf(dir, p2, upstream, { workers: 2 })), '-p', dir], BOTH), (peer) => measure('nginx_http', p2, peer));
      best.keep('nginx_http');
      for (const workers of [1, 2]) {
        const p = await freePort();
        await withPeer(weftPeer(dir, `weft-l7-w${workers}`, p, originPort, workers, plugin), (peer) => measure(`weft_l7_wasm_w${workers}`, p, peer));
        best.keep(`weft_l7_wasm_w${workers}`);
      }
    }
    Object.assign(out, best.best());
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
  out.weft_extra_worker_mb = ((out.weft_idle_rss_w4_mb ?? NaN) - (out.weft_idle_rss_w1_mb ?? NaN)) / 3;
  return out;
}
