// L7 benchmark: requests/s and p99 with wrk (keep-alive, 32 connections, tiny responses) for direct, nginx and HAProxy in HTTP mode, and weft's L7 path plain, with a native header filter, with a hand-written WAT filter and with the first-party header-rewrite plugin doing the same edits (nginx too, as nginx_rewrite), and with each other first-party plugin against nginx as a plain reverse proxy sent the same realistic request; h2load on h2c against nginx's HTTP/2. Every proxy gets one core.
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { LOAD_CPU, bestOfRounds, cpuSecondsOfTree as cpuSeconds, runWrk, startPeer, withPeer, type Peer, type WrkResult } from './bench-tools.js';
import { freePort } from '../helpers/free-port.js';
import { BENCH_REQUEST_HEADERS, BENCH_REQUEST_PATH, FIRST_PARTY_BENCH_PLUGINS, bearerHeader, createJwtBenchFixture, firstPartyBenchConfig } from './first-party-plugin-bench.js';

/** What wrk asks for: a path and extra request headers. */
interface WrkRequest {
  path: string;
  headers: readonly [string, string][];
}

function ratio(a: number | undefined, b: number | undefined): number {
  return a === undefined || b === undefined || b === 0 ? NaN : a / b;
}

/** nginx doing header-rewrite's benchmark edits (set x-wasm-filter, remove x-internal, add x-served-by to the response). */
const NGINX_REWRITE = 'proxy_set_header x-wasm-filter on; proxy_set_header x-internal ""; add_header x-served-by weft-wasm;';
/** What the header-rewrite rows (nginx doing the edits, the hand-written filter, the SDK plugin) are sent: an x-internal for the remove to remove. */
const REWRITE_REQUEST: WrkRequest = { path: '/', headers: [['x-internal', 'secret']] };

/**
 * nginx (origin or HTTP/1.1 reverse proxy) with keep-alive upstreams; one worker unless a section gives it more (each
 * then on its own reuseport socket), optionally doing header-rewrite's edits.
 */
export function nginxConf(dir: string, port: number, upstream: string | undefined, opts: { workers?: number; rewrite?: boolean } = {}): string {
  const location = upstream === undefined ? 'return 200 "ok\\n";' : `proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection "";${opts.rewrite === true ? ` ${NGINX_REWRITE}` : ''}`;
  return `worker_processes ${opts.workers ?? 1};
daemon off;
pid ${dir}/nginx-${port}.pid;
error_log ${dir}/nginx-${port}.log warn;
events { worker_connections 20000; }
http {
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  ${upstream === undefined ? '' : `upstream origin { server ${upstream}; keepalive 64; }`}
  server { listen 127.0.0.1:${port}${(opts.workers ?? 1) > 1 ? ' reuseport' : ''} backlog=4096; location / { ${location} } }
}
`;
}

/** HAProxy in HTTP mode with keep-alive upstreams, one thread. */
function haproxyConf(port: number, upstream: string): string {
  return `global
  nbthread 1
  maxconn 9500
defaults
  mode http
  option http-keep-alive
  http-reuse always
  timeout connect 5s
  timeout client 300s
  timeout server 300s
frontend fe
  bind 127.0.0.1:${port}
  default_backend be
backend be
  server origin ${upstream}
`;
}

export async function writeConf(dir: string, name: string, text: string): Promise<string> {
  const file = path.join(dir, name);
  await writeFile(file, text);
  return file;
}

const run = promisify(execFile);
const HERE = path.dirname(fileURLToPath(import.meta.url));
/** The child entry next to this file: .js when compiled (npm run bench), .ts under tsx. */
const SERVER = path.join(HERE, `l7-bench-server${path.extname(fileURLToPath(import.meta.url))}`);

/** `plugin:<name>` attaches that first-party plugin with `pluginConfig`. */
function startWeftL7(port: number, originPort: number, mode: 'plain' | 'wasm' | 'wasm-sdk' | 'native' | `plugin:${string}`, appProtocol = 'http', pluginConfig?: unknown): Promise<Peer> {
  const args = SERVER.endsWith('.ts') ? ['--import', 'tsx', SERVER] : [SERVER];
  const env = { ...process.env, WEFT_LOG_LEVEL: 'warn', ...(pluginConfig === undefined ? {} : { WEFT_BENCH_PLUGIN_CONFIG: JSON.stringify(pluginConfig) }) };
  return startPeer(`weft-l7-${mode}`, port, [process.execPath, ...args, String(port), String(originPort), mode, appProtocol], undefined, env);
}

/** h2load on h2c (prior knowledge): 32 clients, 10 streams each; successful (2xx) requests/s, so an error storm never counts as speed. */
async function runH2load(port: number, seconds: number): Promise<number> {
  const { stdout } = await run('taskset', ['-c', LOAD_CPU, 'h2load', '-c', '32', '-m', '10', '-D', String(seconds), '-t', '1', `http://127.0.0.1:${port}/`], { maxBuffer: 1 << 20 });
  const ok = Number(/status codes: (\d+) 2xx/.exec(stdout)?.[1] ?? 0);
  return ok / seconds;
}

function nginxH2Conf(dir: string, port: number, upstream: string | undefined): string {
  const location = upstream === undefined ? 'return 200 "ok\\n";' : `proxy_pass http://${upstream}; proxy_http_version 1.1; proxy_set_header Connection "";`;
  return `worker_processes 1;
daemon off;
pid ${dir}/nginx-h2-${port}.pid;
error_log ${dir}/nginx-h2-${port}.log warn;
events { worker_connections 20000; }
http {
  access_log off;
  keepalive_requests 100000000;
  http2_max_concurrent_streams 1000;
  server { listen 127.0.0.1:${port} http2 backlog=4096; location / { ${location} } }
}
`;
}

/**
 * Runs every L7 scenario once, `seconds` each, and returns requests/s, p99 (ms) and the ratios the issue sets targets
 * for: `l7_wasm_vs_nginx_rps` (≥ 1.0), `l7_plain_vs_haproxy_rps` (≥ 0.8), `l7_wasm_vs_nginx_p99` (≤ 1.5).
 */
export async function benchL7(opts: { seconds?: number } = {}): Promise<Record<string, number>> {
  const seconds = opts.seconds ?? Number(process.env.WEFT_BENCH_SECONDS ?? 5);
  const dir = await mkdtemp(path.join(os.tmpdir(), 'weft-bench-l7-'));
  const out: Record<string, number> = {};
  const record = (name: string, r: WrkResult): void => {
    out[`${name}_rps`] = r.rps;
    out[`${name}_p50_ms`] = r.p50ms;
    out[`${name}_p99_ms`] = r.p99ms;
    out[`${name}_errors`] = r.errors;
  };
  const originPort = await freePort();
  const origin = await startPeer('origin', originPort, ['nginx', '-c', await writeConf(dir, 'origin.conf', nginxConf(dir, originPort, undefined)), '-p', dir], LOAD_CPU);
  const upstream = `127.0.0.1:${originPort}`;
  /**
   * Requests/s and latency, plus the proxy's own CPU time per request: on a shared 2-core machine throughput swings
   * with whatever else runs, while CPU per request is a steadier measure of the proxy's cost.
   */
  const measure = async (name: string, port: number, peer?: Peer, request: WrkRequest = { path: '/', headers: [] }): Promise<void> => {
    const url = `http://127.0.0.1:${port}${request.path}`;
    const headers = request.headers.flatMap(([k, v]) => ['-H', `${k}: ${v}`]);
    // A short warm-up so JIT-compiled peers are measured hot, as the C peers are.
    await runWrk(url, 1, 32, headers);
    const pid = peer?.process.pid;
    const before = pid === undefined ? 0 : await cpuSeconds(pid);
    const r = await runWrk(url, seconds, 32, headers);
    record(name, r);
    if (pid !== undefined && r.rps > 0) out[`${name}_cpu_us_per_req`] = ((await cpuSeconds(pid)) - before) * 1e6 / (r.rps * seconds);
  };
  const rounds = Number(process.env.WEFT_BENCH_L7_ROUNDS ?? 3);
  // The best round of each scenario (highest req/s), all of its numbers together.
  const bestRounds = bestOfRounds(out);
  const keep = bestRounds.keep;
  // Each first-party plugin on weft's L7 path, and nginx as a plain reverse proxy, all sent the same realistic request.
  const jwt = createJwtBenchFixture();
  const pluginRequest: WrkRequest = { path: BENCH_REQUEST_PATH, headers: [...BENCH_REQUEST_HEADERS, bearerHeader(jwt)] };
  const measurePlugins = async (): Promise<void> => {
    const pn = await freePort();
    await withPeer(startPeer('nginx-http', pn, ['nginx', '-c', await writeConf(dir, 'nginx-http.conf', nginxConf(dir, pn, upstream)), '-p', dir]), (peer) => measure('nginx_http_plugin_request', pn, peer, pluginRequest));
    keep('nginx_http_plugin_request');
    // weft's L7 path without a plugin on the same request: what each plugin row adds to it.
    const pw = await freePort();
    await withPeer(startWeftL7(pw, originPort, 'plain'), (peer) => measure('weft_l7_plain_plugin_request', pw, peer, pluginRequest));
    keep('weft_l7_plain_plugin_request');
    for (const name of FIRST_PARTY_BENCH_PLUGINS) {
      const label = `weft_l7_plugin_${name.replace('-', '_')}`;
      const p = await freePort();
      await withPeer(startWeftL7(p, originPort, `plugin:${name}`, 'http', firstPartyBenchConfig(name, jwt)), (peer) => measure(label, p, peer, pluginRequest));
      keep(label);
    }
  };
  const pluginRatios = (): void => {
    for (const name of FIRST_PARTY_BENCH_PLUGINS) {
      const label = name.replace('-', '_');
      out[`l7_plugin_${label}_vs_nginx_rps`] = ratio(out[`weft_l7_plugin_${label}_rps`], out.nginx_http_plugin_request_rps);
      out[`l7_plugin_${label}_vs_nginx_p99`] = ratio(out[`weft_l7_plugin_${label}_p99_ms`], out.nginx_http_plugin_request_p99_ms);
      out[`l7_plugin_${label}_vs_nginx_cpu_efficiency`] = ratio(out.nginx_http_plugin_request_cpu_us_per_req, out[`weft_l7_plugin_${label}_cpu_us_per_req`]);
      out[`l7_plugin_${label}_over_plain_cpu_us`] = (out[`weft_l7_plugin_${label}_cpu_us_per_req`] ?? NaN) - (out.weft_l7_plain_plugin_request_cpu_us_per_req ?? NaN);
    }
  };
  // `WEFT_BENCH_L7_ONLY=rewrite` runs just the header-rewrite comparison (nginx doing the same edits, the hand-written
  // Wasm filter, the SDK plugin), `plugins` just the first-party plugins against nginx; interleaved over
  // WEFT_BENCH_L7_ROUNDS rounds, best of each.
  const l7Only = process.env.WEFT_BENCH_L7_ONLY;
  if (l7Only === 'plugins') {
    try {
      for (let r = 0; r < rounds; r++) await measurePlugins();
      Object.assign(out, bestRounds.best());
    } finally {
      await origin.stop();
      await rm(dir, { recursive: true, force: true });
    }
    pluginRatios();
    return out;
  }
  if (l7Only === 'rewrite') {
    try {
      for (let r = 0; r < rounds; r++) {
        const pn = await freePort();
        await withPeer(startPeer('nginx-rewrite', pn, ['nginx', '-c', await writeConf(dir, 'nginx-rewrite.conf', nginxConf(dir, pn, upstream, { rewrite: true })), '-p', dir]), (peer) => measure('nginx_rewrite', pn, peer, REWRITE_REQUEST));
        keep('nginx_rewrite');
        for (const mode of ['wasm', 'wasm-sdk'] as const) {
          const p = await freePort();
          await withPeer(startWeftL7(p, originPort, mode), (peer) => measure(`weft_l7_${mode.replace('-', '_')}`, p, peer, REWRITE_REQUEST));
          keep(`weft_l7_${mode.replace('-', '_')}`);
        }
      }
      Object.assign(out, bestRounds.best());
    } finally {
      await origin.stop();
      await rm(dir, { recursive: true, force: true });
    }
      out.l7_wasm_sdk_vs_nginx_rewrite_rps = ratio(out.weft_l7_wasm_sdk_rps, out.nginx_rewrite_rps);
    out.l7_wasm_sdk_vs_nginx_rewrite_p99 = ratio(out.weft_l7_wasm_sdk_p99_ms, out.nginx_rewrite_p99_ms);
    out.l7_wasm_hand_vs_nginx_rewrite_rps = ratio(out.weft_l7_wasm_rps, out.nginx_rewrite_rps);
    out.l7_wasm_sdk_over_hand_cpu_us = (out.weft_l7_wasm_sdk_cpu_us_per_req ?? NaN) - (out.weft_l7_wasm_cpu_us_per_req ?? NaN);
    return out;
  }
  try {
    await measure('direct', originPort);
    const p1 = await freePort();
    await withPeer(startPeer('nginx-http', p1, ['nginx', '-c', await writeConf(dir, 'nginx-http.conf', nginxConf(dir, p1, upstream)), '-p', dir]), (peer) => measure('nginx_http', p1, peer));
    const pn = await freePort();
    await withPeer(startPeer('nginx-rewrite', pn, ['nginx', '-c', await writeConf(dir, 'nginx-rewrite.conf', nginxConf(dir, pn, upstream, { rewrite: true })), '-p', dir]), (peer) => measure('nginx_rewrite', pn, peer, REWRITE_REQUEST));
    const p2 = await freePort();
    await withPeer(startPeer('haproxy-http', p2, ['haproxy', '-f', await writeConf(dir, 'haproxy-http.cfg', haproxyConf(p2, upstream)), '-db']), (peer) => measure('haproxy_http', p2, peer));
    for (const mode of ['plain', 'native', 'wasm', 'wasm-sdk'] as const) {
      const p = await freePort();
      await withPeer(startWeftL7(p, originPort, mode), (peer) => measure(`weft_l7_${mode.replace('-', '_')}`, p, peer, mode === 'wasm' || mode === 'wasm-sdk' ? REWRITE_REQUEST : undefined));
    }
    await measurePlugins();

    // h2c: nginx HTTP/2 (proxying to the HTTP/1.1 origin) against weft h2c (proxying to an h2c origin).
    const h2Origin = await freePort();
    const h2OriginConf = path.join(dir, 'nginx-h2-origin.conf');
    await writeFile(h2OriginConf, nginxH2Conf(dir, h2Origin, undefined));
    await withPeer(startPeer('h2-origin', h2Origin, ['nginx', '-c', h2OriginConf, '-p', dir], LOAD_CPU), async () => {
      out.h2_direct_rps = await runH2load(h2Origin, seconds);
      const n = await freePort();
      const nConf = path.join(dir, 'nginx-h2-proxy.conf');
      await writeFile(nConf, nginxH2Conf(dir, n, upstream));
      await withPeer(startPeer('nginx-h2', n, ['nginx', '-c', nConf, '-p', dir]), async () => {
        out.h2_nginx_rps = await runH2load(n, seconds);
      });
      // weft as nginx does it (h2c in, HTTP/1.1 to the origin) and h2c end to end.
      const w = await freePort();
      await withPeer(startWeftL7(w, originPort, 'plain', 'http'), async () => {
        out.h2_weft_l7_rps = await runH2load(w, seconds);
      });
      const w2 = await freePort();
      await withPeer(startWeftL7(w2, h2Origin, 'plain', 'http2'), async () => {
        out.h2_weft_l7_h2_upstream_rps = await runH2load(w2, seconds);
      });
    });
  } finally {
    await origin.stop();
    await rm(dir, { recursive: true, force: true });
  }
  out.l7_wasm_vs_nginx_rps = ratio(out.weft_l7_wasm_rps, out.nginx_http_rps);
  out.l7_plain_vs_haproxy_rps = ratio(out.weft_l7_plain_rps, out.haproxy_http_rps);
  out.l7_wasm_vs_nginx_p99 = ratio(out.weft_l7_wasm_p99_ms, out.nginx_http_p99_ms);
  out.l7_wasm_sdk_vs_nginx_rps = ratio(out.weft_l7_wasm_sdk_rps, out.nginx_http_rps);
  out.l7_wasm_sdk_vs_nginx_p99 = ratio(out.weft_l7_wasm_sdk_p99_ms, out.nginx_http_p99_ms);
  out.l7_wasm_sdk_vs_nginx_rewrite_rps = ratio(out.weft_l7_wasm_sdk_rps, out.nginx_rewrite_rps);
  out.l7_wasm_sdk_vs_nginx_rewrite_p99 = ratio(out.weft_l7_wasm_sdk_p99_ms, out.nginx_rewrite_p99_ms);
  out.l7_plain_vs_direct_rps = ratio(out.weft_l7_plain_rps, out.direct_rps);
  out.nginx_vs_direct_rps = ratio(out.nginx_http_rps, out.direct_rps);
  out.h2_weft_vs_nginx_rps = ratio(out.h2_weft_l7_rps, out.h2_nginx_rps);
  // Efficiency ratios (peer CPU per request ÷ weft CPU per request): 1.0 means as cheap per request as the peer.
  out.l7_wasm_vs_nginx_cpu_efficiency = ratio(out.nginx_http_cpu_us_per_req, out.weft_l7_wasm_cpu_us_per_req);
  out.l7_plain_vs_haproxy_cpu_efficiency = ratio(out.haproxy_http_cpu_us_per_req, out.weft_l7_plain_cpu_us_per_req);
  pluginRatios();
  return out;
}

// Runnable on its own: `npx tsx test/bench/l7.ts` prints the results as JSON.
if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  benchL7().then(
    (r) => process.stdout.write(JSON.stringify(r, null, 2) + '\n'),
    (err: unknown) => {
      process.stderr.write(`l7 bench failed: ${(err as Error).stack ?? String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
