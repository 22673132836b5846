// L4 benchmark: requests/s and latency (wrk), bulk throughput (iperf3) and memory, for direct, HAProxy TCP, nginx stream and weft, in one run.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { stringify } from 'yaml';
import { LOAD_CPU, REPO_ROOT, cpuSecondsOfTree, withPeer, renderTemplate, rssKb, runIperf, runWrk, startPeer, waitForPort, waitForReady, type Peer, type WrkResult } from './bench-tools.js';
import { freePort } from '../helpers/free-port.js';

export interface L4Results {
  wrk: Record<string, WrkResult>;
  iperfGbps: Record<string, number>;
  memory: { weftIdleMb: number; weftPerConnKb: number; haproxyPerConnKb: number; connections: number };
}

/** A weft config proxying one local port to `upstreamPort` at L4 (workers: 1, access log to a file). */
export async function writeWeftConfig(dir: string, name: string, listen: number, upstreamPort: number, extra: Record<string, unknown> = {}): Promise<WeftBenchConfig> {
  const ports = await Promise.all([freePort(), freePort(), freePort(), freePort(), freePort(), freePort()]);
  const config = {
    node: 'bench',
    workers: 1,
    listeners: {
      outbound: { address: `127.0.0.1:${ports[0]}` },
      inbound: { address: `127.0.0.1:${ports[1]}` },
      explicitProxy: { address: `127.0.0.1:${ports[2]}` },
      admin: `127.0.0.1:${ports[3]}`,
      metrics: `127.0.0.1:${ports[4]}`,
      readiness: `127.0.0.1:${ports[5]}`,
    },
    accessLog: { enabled: true, path: path.join(dir, `${name}-access.log`) },
    workloads: [{ name: 'origin-1', addresses: ['127.0.0.1'], labels: { app: 'origin' } }],
    services: [{ name: 'origin', addresses: ['10.96.0.1'], ports: [{ port: 80, targetPort: upstreamPort }], selector: { app: 'origin' } }],
    localPorts: [{ listen: `127.0.0.1:${listen}`, service: 'origin.default', port: 80 }],
    ...extra,
  };
  const file = path.join(dir, `${name}.yaml`);
  await writeFile(file, stringify(config));
  return { file, readinessPort: ports[5] };
}

export interface WeftBenchConfig {
  file: string;
  readinessPort: number;
}

/** Waits on weft's readiness port, not the data port: a probe there would open an upstream connection (iperf3 takes it for a client). */
export function startWeft(name: string, config: WeftBenchConfig, port: number, cpus?: string): Promise<Peer> {
  return startPeer(name, port, [process.execPath, path.join(REPO_ROOT, 'dist/runtime/cli.js'), 'run', '--config', config.file], cpus, { ...process.env, WEFT_LOG_LEVEL: 'warn' }, () => waitForReady(config.readinessPort));
}

export function progress(step: string): void {
  process.stderr.write(`[bench] ${step}\n`);
}


export async function benchL4(opts: { seconds: number; connections: number }): Promise<L4Results> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'weft-bench-l4-'));
  const originPort = await freePort();
  const origin = await startPeer('origin', originPort, ['nginx', '-c', await renderTemplate('nginx-origin.conf', dir, { PORT: originPort }), '-p', dir], LOAD_CPU);
  const upstream = `127.0.0.1:${originPort}`;
  const wrk: Record<string, WrkResult> = {};
  const iperfGbps: Record<string, number> = {};
  /** wrk against `port`; with `pid`, also the CPU that process (and its children) spent per request. */
  const measure = async (name: string, port: number, pid?: number): Promise<void> => {
    progress(`wrk ${name}`);
    await runWrk(`http://127.0.0.1:${port}/`, 1, opts.connections); // warm-up (JIT, pools)
    const cpuBefore = pid === undefined ? 0 : await cpuSecondsOfTree(pid);
    const result = await runWrk(`http://127.0.0.1:${port}/`, opts.seconds, opts.connections);
    if (pid !== undefined && result.requests > 0) result.cpuUsPerReq = ((await cpuSecondsOfTree(pid)) - cpuBefore) * 1e6 / result.requests;
    wrk[name] = result;
  };
  try {
    await measure('direct', originPort);
    const p1 = await freePort();
    await withPeer(startPeer('haproxy-tcp', p1, ['haproxy', '-f', await renderTemplate('haproxy-tcp.cfg', dir, { PORT: p1, UPSTREAM: upstream }), '-db']), (peer) => measure('haproxy-tcp', p1, peer.process.pid));
    const p2 = await freePort();
    await withPeer(startPeer('nginx-stream', p2, ['nginx', '-c', await renderTemplate('nginx-stream-proxy.conf', dir, { PORT: p2, UPSTREAM: upstream }), '-p', dir]), (peer) => measure('nginx-stream', p2, peer.process.pid));
    const p3 = await freePort();
    await withPeer(startWeft('weft-l4', await writeWeftConfig(dir, 'weft-l4', p3, originPort), p3), (peer) => measure('weft-l4', p3, peer.process.pid));

    // Bulk throughput: one iperf3 stream through each proxy to an iperf3 server.
    const iperfPort = await freePort();
    const iperfServer = await startPeer('iperf3-server', iperfPort, ['iperf3', '-s', '-p', String(iperfPort), '-B', '127.0.0.1', '--forceflush'], LOAD_CPU, process.env, /Server listening/);
    const iperfUpstream = `127.0.0.1:${iperfPort}`;
    try {
      progress('iperf3 direct, haproxy-tcp, nginx-stream, weft-l4');
      iperfGbps.direct = await runIperf(iperfPort, opts.seconds);
      const q1 = await freePort();
      iperfGbps['haproxy-tcp'] = await withPeer(startPeer('haproxy-tcp', q1, ['haproxy', '-f', await renderTemplate('haproxy-tcp.cfg', dir, { PORT: q1, UPSTREAM: iperfUpstream }), '-db']), () => runIperf(q1, opts.seconds));
      const q2 = await freePort();
      iperfGbps['nginx-stream'] = await withPeer(startPeer('nginx-stream', q2, ['nginx', '-c', await renderTemplate('nginx-stream-proxy.conf', dir, { PORT: q2, UPSTREAM: iperfUpstream }), '-p', dir]), () => runIperf(q2, opts.seconds));
      const q3 = await freePort();
      iperfGbps['weft-l4'] = await withPeer(startWeft('weft-l4', await writeWeftConfig(dir, 'weft-iperf', q3, iperfPort), q3), () => runIperf(q3, opts.seconds));
    } finally {
      await iperfServer.stop();
    }
    const memory = await benchMemory(dir);
    return { wrk, iperfGbps, memory };
  } finally {
    await origin.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

/** RSS of weft idle, then per open idle connection with 10k connections held through it (HAProxy measured the same way). */
async function benchMemory(dir: string): Promise<L4Results['memory']> {
  // 9,000: each proxied connection holds two fds and this sandbox caps a process at 20,000.
  const connections = 9_000;
  const holdScript = path.join(REPO_ROOT, 'dist/test/bench/hold-connections.js');
  const holdPort = await freePort();
  const holder = await startPeer('holder', holdPort, [process.execPath, holdScript, 'server', String(holdPort)], LOAD_CPU, process.env, /ready/);
  const perConnection = async (peer: Peer, port: number): Promise<{ idleKb: number; perConnKb: number }> => {
    progress(`memory ${peer.name}: ${connections} idle connections`);
    await new Promise((r) => setTimeout(r, 1_000));
    const idleKb = await rssKb(peer.process.pid as number);
    const client = spawn('bash', ['-c', `ulimit -n $(ulimit -Hn); exec taskset -c ${LOAD_CPU} '${process.execPath}' '${holdScript}' client ${port} ${connections}`], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      await new Promise<void>((resolve, reject) => {
        client.stdout.on('data', (d: Buffer) => (d.toString().startsWith('ready') ? resolve() : undefined));
        client.once('exit', () => reject(new Error('connection holder exited early')));
      });
      await new Promise((r) => setTimeout(r, 1_500));
      const loadedKb = await rssKb(peer.process.pid as number);
      return { idleKb, perConnKb: (loadedKb - idleKb) / connections };
    } finally {
      client.kill('SIGKILL');
    }
  };
  try {
    const p1 = await freePort();
    const weft = await withPeer(startWeft('weft-mem', await writeWeftConfig(dir, 'weft-mem', p1, holdPort, { accessLog: { enabled: false } }), p1), (peer) => perConnection(peer, p1));
    const p2 = await freePort();
    const haproxy = await withPeer(startPeer('haproxy-mem', p2, ['haproxy', '-f', await renderTemplate('haproxy-tcp.cfg', dir, { PORT: p2, UPSTREAM: `127.0.0.1:${holdPort}` }), '-db']), (peer) => perConnection(peer, p2));
    return { weftIdleMb: weft.idleKb / 1024, weftPerConnKb: weft.perConnKb, haproxyPerConnKb: haproxy.perConnKb, connections };
  } finally {
    await holder.stop();
  }
}

export { waitForPort };
