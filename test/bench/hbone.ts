// HBONE benchmarks through two whole weft runtimes in one process: bulk throughput (iperf3) direct vs plaintext L4 vs HBONE, next to an HAProxy pair tunnelling the same hop in mutual TLS and in plaintext; requests/s (wrk) plaintext vs HBONE; new HBONE handshakes per second.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Worker } from 'node:worker_threads';
import { createApp, type App } from '../../runtime/app.js';
import { configSchema } from '../../runtime/config/config-schema.js';
import { HboneClient, type HboneConnectRequest } from '../../runtime/hbone/hbone-client.js';
import { TlsSessionCache } from '../../runtime/hbone/tls-session-cache.js';
import type { SocketAddr } from '../../runtime/l4/original-destination.js';
import { CertificateAuthority } from '../../runtime/identity/certificate-authority.js';
import { setLogLevel } from '../../runtime/log.js';
import { freePort } from '../helpers/free-port.js';
import { cpuSecondsOfTree, renderTemplate, startPeer, withPeer } from './bench-tools.js';

const run = promisify(execFile);
/** client pod on node A; server pod (HBONE) and a plaintext-path stand-in address on node B. */
export const IP = { client: '127.0.0.41', server: '127.0.0.51', plainInbound: '127.0.0.52' } as const;
const SERVER_ID = 'spiffe://cluster.local/ns/bench/sa/server';
const CLIENT_ID = 'spiffe://cluster.local/ns/bench/sa/client';
const SECONDS = Number(process.env.WEFT_BENCH_SECONDS ?? 5);

/** A port free on every address: HBONE listeners bind `hbone.port` on each hosted workload IP (node A hosts 127.0.0.1 too). */
async function portFreeOnAll(hosts: string[]): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = await freePort(hosts[0]);
    const free = await Promise.all(
      hosts.slice(1).map(
        (host) =>
          new Promise<boolean>((resolve) => {
            const s = net.createServer();
            s.once('error', () => resolve(false));
            s.listen(port, host, () => s.close(() => resolve(true)));
          }),
      ),
    );
    if (free.every(Boolean)) return port;
  }
  throw new Error(`no port free on all of ${hosts.join(', ')}`);
}

interface Nodes {
  a: App;
  /** node A localPorts: client → A → HBONE → B → target. */
  hbonePort: number;
  /** node A localPorts: client → A → plaintext → B (inbound path) → target. */
  plainPort: number;
  hboneListenPort: number;
  /** Node B's thread CPU so far (µs), or undefined when node B shares this thread. */
  nodeBCpuMicros(): Promise<number | undefined>;
  close(): Promise<void>;
}

/** Where node B runs: `thread` (its own event loop, as on its own machine) or `here` (on this thread, with node A and the client loop). */
export type NodeBPlacement = 'here' | 'thread';

/** weft.yaml of one bench node (both nodes get the same workloads and services; only `node` differs). */
export function benchConfig(node: string, o: NodeOptions): Record<string, unknown> {
  return {
    node,
    accessLog: { enabled: false },
    identity: { caDir: o.caDir },
    hbone: { port: o.hboneListenPort },
    listeners: { outbound: { address: '127.0.0.1:0' }, inbound: { address: '127.0.0.1:0' }, explicitProxy: { address: '127.0.0.1:0' }, admin: '127.0.0.1:0', metrics: '127.0.0.1:0', readiness: '127.0.0.1:0' },
    workloads: [
      // wrk cannot bind a source address, so 127.0.0.1 belongs to the client pod too: its connections are then
      // mesh traffic from a known workload (HBONE), not anonymous local-mode traffic (plaintext, one hop).
      { name: 'client', namespace: 'bench', serviceAccount: 'client', addresses: [IP.client, '127.0.0.1'], node: 'node-a', protocol: 'HBONE' },
      { name: 'server', namespace: 'bench', serviceAccount: 'server', addresses: [IP.server], node: 'node-b', protocol: 'HBONE', labels: { app: 'server' } },
      { name: 'server-plain', namespace: 'bench', serviceAccount: 'server', addresses: [IP.plainInbound], node: 'node-b', protocol: 'TCP', labels: { app: 'server-plain' } },
    ],
    services: [
      { name: 'hbone', namespace: 'bench', addresses: ['10.96.9.1'], ports: [{ port: 80, targetPort: o.targetPort }], selector: { app: 'server' } },
      { name: 'plain', namespace: 'bench', addresses: ['10.96.9.2'], ports: [{ port: 80, targetPort: o.plainTargetPort }], selector: { app: 'server-plain' } },
    ],
    localPorts: node === 'node-a' ? [{ listen: '127.0.0.1:0', service: 'hbone.bench', port: 80 }, { listen: '127.0.0.2:0', service: 'plain.bench', port: 80 }] : [],
  };
}

/**
 * Two runtimes on loopback (node B in this thread by default, or in a worker thread: `nodeB`, else WEFT_BENCH_NODE_B=thread). The HBONE service's endpoint is the server pod (protocol HBONE). The plaintext service's endpoint
 * is a TCP workload whose address is a listener handing sockets to node B's inbound path (what 15006 does after
 * TPROXY), so both paths cross both runtimes and differ only in the tunnel between them.
 */
export async function startNodes(targetPort: number, nodeB: NodeBPlacement = process.env.WEFT_BENCH_NODE_B === 'thread' ? 'thread' : 'here'): Promise<Nodes> {
  const o = { caDir: join(mkdtempSync(join(tmpdir(), 'weft-bench-ca-')), 'ca'), hboneListenPort: await portFreeOnAll([IP.server, IP.client, '127.0.0.1']), plainTargetPort: await freePort(IP.plainInbound), targetPort };
  // Node B first: it creates the CA root in caDir that node A then loads.
  const b = nodeB === 'thread' ? await startNodeBThread(o) : await startNodeBHere(o);
  const a = await createApp(configSchema.parse(benchConfig('node-a', o)));
  const local = a.ports.localPorts;
  return {
    a,
    hbonePort: local['127.0.0.1:0'] ?? 0,
    plainPort: local['127.0.0.2:0'] ?? 0,
    hboneListenPort: o.hboneListenPort,
    nodeBCpuMicros: () => b.cpuMicros(),
    close: async () => {
      await a.shutdown(0);
      await b.stop();
    },
  };
}

type NodeOptions = { caDir: string; hboneListenPort: number; targetPort: number; plainTargetPort: number };

/** Node B in this thread (default): measured here, a second event loop loses more to contention with iperf3 on 2 cores than it gains. */
async function startNodeBHere(o: NodeOptions): Promise<NodeB> {
  const b = await createApp(configSchema.parse(benchConfig('node-b', o)));
  const inbound = net.createServer({ allowHalfOpen: true, noDelay: true }, (s) => void b.handleInbound(s, { address: IP.server, port: o.targetPort }));
  await new Promise<void>((resolve) => inbound.listen(o.plainTargetPort, IP.plainInbound, resolve));
  return {
    cpuMicros: () => Promise.resolve(undefined),
    stop: async () => {
      inbound.close();
      await b.shutdown(0);
    },
  };
}

interface NodeB {
  cpuMicros(): Promise<number | undefined>;
  stop(): Promise<void>;
}

/** Node B in a worker thread (WEFT_BENCH_NODE_B=thread): one event loop per node, as two machines would have. */
async function startNodeBThread(o: NodeOptions): Promise<NodeB> {
  const workerData = { raw: benchConfig('node-b', o), inbound: { address: IP.plainInbound, port: o.plainTargetPort }, target: { address: IP.server, port: o.targetPort } };
  const fromSource = import.meta.url.endsWith('.ts');
  const entry = new URL(`./hbone-node-b.${fromSource ? 'ts' : 'js'}`, import.meta.url);
  // Compiled (npm run bench) the worker loads the .js sibling; run from TypeScript it first registers tsx's loader,
  // which worker threads do not inherit.
  const worker = fromSource
    ? new Worker(`import('tsx/esm/api').then((tsx) => { tsx.register(); return import(${JSON.stringify(entry.href)}); })`, { eval: true, workerData })
    : new Worker(entry, { workerData });
  await new Promise<void>((resolve, reject) => {
    worker.once('message', () => resolve());
    worker.once('error', reject);
  });
  return {
    cpuMicros: async () => {
      const answer = new Promise<number>((resolve) => worker.once('message', (m: number) => resolve(m)));
      worker.postMessage('cpu');
      return answer;
    },
    stop: async () => {
      worker.postMessage('stop');
      await new Promise((r) => worker.once('exit', r));
    },
  };
}

/** iperf3 from the client pod's address; control and data connections both take the path under test. One retry: a just-finished test can leave the server busy for a moment. */
async function iperf(host: string, port: number): Promise<number> {
  try {
    return await iperfOnce(host, port);
  } catch {
    await new Promise((r) => setTimeout(r, 1000));
    return iperfOnce(host, port);
  }
}

async function iperfOnce(host: string, port: number): Promise<number> {
  const { stdout } = await run('iperf3', ['-c', host, '-p', String(port), '-B', IP.client, '-t', String(SECONDS), '-J'], { maxBuffer: 64 * 1024 * 1024 }).catch((err: { stdout?: string }) => ({ stdout: err.stdout ?? '{"end":{}}' }));
  const out = JSON.parse(stdout) as { error?: string; end: { sum_received?: { bits_per_second: number } } };
  if (out.end.sum_received === undefined) throw new Error(`iperf3 through ${host}:${port} failed: ${out.error ?? 'no result'}`);
  return out.end.sum_received.bits_per_second / 1e9;
}

async function wrk(port: number, host = '127.0.0.1'): Promise<number> {
  const { stdout } = await run('wrk', ['-t1', '-c32', `-d${SECONDS}s`, `http://${host}:${port}/`]);
  const m = /Requests\/sec:\s+([\d.]+)/.exec(stdout);
  return m === null ? 0 : Number(m[1]);
}

async function spawnReady(cmd: string, args: string[], host: string, port: number): Promise<ChildProcess> {
  const child = spawn(cmd, args, { stdio: 'ignore' });
  for (let i = 0; i < 100; i++) {
    const up = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host, port }, () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (up) return child;
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill();
  throw new Error(`${cmd} did not start listening on ${host}:${port}`);
}

async function startNginx(host: string): Promise<{ port: number; child: ChildProcess }> {
  const dir = mkdtempSync(join(tmpdir(), 'weft-bench-nginx-'));
  const port = await freePort(host);
  writeFileSync(
    join(dir, 'nginx.conf'),
    `worker_processes 1; daemon off; pid ${dir}/nginx.pid; error_log ${dir}/error.log; events { worker_connections 1024; }
http { access_log off; keepalive_requests 1000000; server { listen ${host}:${port}; location / { return 200 "ok\\n"; } } }`,
  );
  return { port, child: await spawnReady('nginx', ['-c', join(dir, 'nginx.conf'), '-p', dir], host, port) };
}

/**
 * Two HAProxy instances in one thread (configs/haproxy-tunnel-pair.cfg), the hop between them mutual TLS 1.3 with
 * certificates from weft's CA, or plaintext: what a C proxy with OpenSSL reaches on this machine in the topology the
 * HBONE measures use (both nodes on one thread, unpinned like this process). `fn` gets frontend A's port.
 */
async function withHaproxyPair<T>(upstream: SocketAddr, tls: boolean, fn: (port: number, pid: number) => Promise<T>, serverOptions = ''): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), 'weft-bench-haproxy-pair-'));
  const ca = CertificateAuthority.generate('cluster.local');
  const pem = (id: string): string => {
    const cert = ca.issueWorkload(id, { ttlSeconds: 3600 });
    const file = join(dir, `${id.split('/').pop() ?? 'leaf'}.pem`);
    writeFileSync(file, cert.certChainPem.join('') + cert.privateKeyPem);
    return file;
  };
  writeFileSync(join(dir, 'root.pem'), ca.rootPem);
  const verify = ` ca-file ${join(dir, 'root.pem')} verify required ssl-min-ver TLSv1.3`;
  const [portA, portB] = [await freePort(), await freePort()];
  const config = await renderTemplate('haproxy-tunnel-pair.cfg', dir, {
    HOST_A: '127.0.0.1',
    PORT_A: portA,
    HOST_B: '127.0.0.1',
    PORT_B: portB,
    UPSTREAM: `${upstream.address}:${upstream.port}`,
    TLS_SERVER: tls ? ` ssl crt ${pem(CLIENT_ID)}${verify}${serverOptions}` : '',
    TLS_BIND: tls ? ` ssl crt ${pem(SERVER_ID)}${verify}` : '',
  });
  return withPeer(startPeer(`haproxy-pair-${tls ? 'tls' : 'plain'}`, portA, ['haproxy', '-f', config, '-db'], '0,1'), (peer) => fn(portA, peer.process.pid ?? 0));
}

/** iperf3 through the HAProxy pair. */
function iperfThroughHaproxyPair(targetPort: number, tls: boolean): Promise<number> {
  return withHaproxyPair({ address: IP.server, port: targetPort }, tls, (port) => iperf('127.0.0.1', port));
}

/** Runs `once` 8 at a time for SECONDS and returns completions per second. */
async function perSecond(once: () => Promise<void>): Promise<number> {
  const until = Date.now() + SECONDS * 1000;
  let n = 0;
  const worker = async (): Promise<void> => {
    while (Date.now() < until) {
      await once();
      n++;
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  return n / SECONDS;
}

/** One echoed byte over `s`, then the end: the same exchange for HBONE and for the HAProxy pair. */
async function echoOneByte(s: Duplex): Promise<void> {
  s.end('x');
  for await (const chunk of s) void chunk;
}

/**
 * New HBONE connections per second: each a fresh pooled connection (TLS 1.3 + HTTP/2 + CONNECT + one echoed byte).
 * `resumed`: the clients share one TLS session cache, as one node's client does across its connections, so every
 * handshake after the first resumes; otherwise every handshake is a full one.
 */
export async function handshakesPerSecond(nodes: Nodes, echoPort: number, resumed = false): Promise<{ perSecond: number; resumedFraction: number }> {
  const sessionCache = resumed ? new TlsSessionCache() : undefined;
  const count = { handshakes: 0, resumed: 0 };
  const rate = await perSecond(async () => {
    const client = new HboneClient({ certificates: nodes.a.hbone.certificates, ...(sessionCache === undefined ? {} : { sessionCache }), resumeSessions: resumed });
    try {
      await echoOneByte(await client.connect(benchRequest(nodes, echoPort)));
    } finally {
      client.close();
      count.handshakes += client.handshakes;
      count.resumed += client.resumedHandshakes;
    }
  });
  return { perSecond: rate, resumedFraction: count.resumed / Math.max(1, count.handshakes) };
}

/**
 * New tunnels per second over one pooled connection (ztunnel's common case: a new L4 connection from the same source
 * identity to the same destination reuses the pool's HBONE connection, so it costs a CONNECT, not a TLS handshake).
 */
export async function pooledTunnelsPerSecond(nodes: Nodes, echoPort: number): Promise<number> {
  const client = new HboneClient({ certificates: nodes.a.hbone.certificates });
  try {
    await echoOneByte(await client.connect(benchRequest(nodes, echoPort)));
    return await perSecond(async () => echoOneByte(await client.connect(benchRequest(nodes, echoPort))));
  } finally {
    client.close();
  }
}

function benchRequest(nodes: Nodes, echoPort: number): HboneConnectRequest {
  return { sourceIdentity: CLIENT_ID, sourceAddress: IP.client, destination: { address: IP.server, port: echoPort }, destinationIdentities: [SERVER_ID], via: { address: IP.server, port: nodes.hboneListenPort } };
}

/**
 * New TCP connections per second through the HAProxy pair, each one a new mutual TLS 1.3 handshake between the two
 * (HAProxy does not pool TCP-mode backend connections) and one echoed byte. HAProxy's backend resumes the last TLS
 * session it got from that server unless `sslReuse` is false (`no-ssl-reuse`), so its default is resumed handshakes.
 * CPU: HAProxy's own, and HAProxy's plus this process's (the client loop and the echo server, which weft's figure
 * includes too since both weft nodes run in this process).
 */
export async function haproxyPairConnectionsPerSecond(echoPort: number, sslReuse = true): Promise<{ value: number; cpuMs: number; withClientCpuMs: number }> {
  return withHaproxyPair(
    { address: IP.server, port: echoPort },
    true,
    async (port, pid) => {
      const before = await cpuSecondsOfTree(pid);
      const mine = process.cpuUsage();
      const value = await perSecond(async () => {
        const s = net.connect({ host: '127.0.0.1', port, localAddress: IP.client });
        s.setNoDelay(true);
        await echoOneByte(s);
      });
      const used = process.cpuUsage(mine);
      const cpuMs = ((await cpuSecondsOfTree(pid)) - before) * 1000;
      return { value, cpuMs, withClientCpuMs: cpuMs + (used.user + used.system) / 1000 };
    },
    sslReuse ? '' : ' no-ssl-reuse',
  );
}

/**
 * The connection-setup measures (`only` picks among full, resumed, pooled, haproxy), with CPU per connection of this
 * process (both runtimes, the client loop and the echo server, all threads) and of HAProxy. With node B on its own
 * thread, the CPU is also split: `_node_b_cpu_ms` is node B's thread (the HBONE server), `_client_loop_cpu_ms` this
 * thread (the HboneClient loop standing in for node A, and the echo server); the rest is V8's helper threads (GC).
 * `suffix` names the rows of a second placement (`_one_loop`).
 */
export async function connectionSetup(nodes: Nodes, echoPort: number, only: ReadonlySet<string> = new Set(['full', 'resumed', 'pooled', 'haproxy']), suffix = ''): Promise<Record<string, number>> {
  const results: Record<string, number> = {};
  // CPU per connection is steadier than connections/s on a shared machine.
  const cpuPerConnection = (r: { value: number; cpuMs: number }): number => r.cpuMs / (r.value * SECONDS);
  const record = (name: string, r: NodeCpu): void => {
    results[`${name}${suffix}_cpu_ms`] = cpuPerConnection(r);
    if (r.nodeBMs === undefined) return;
    results[`${name}${suffix}_node_b_cpu_ms`] = cpuPerConnection({ value: r.value, cpuMs: r.nodeBMs });
    results[`${name}${suffix}_client_loop_cpu_ms`] = cpuPerConnection({ value: r.value, cpuMs: r.clientLoopMs });
  };
  for (const mode of ['full', 'resumed'] as const) {
    if (!only.has(mode)) continue;
    let fraction = 0;
    const r = await withNodeCpu(nodes, async () => {
      const { perSecond: rate, resumedFraction } = await handshakesPerSecond(nodes, echoPort, mode === 'resumed');
      fraction = resumedFraction;
      return rate;
    });
    const kind = mode === 'full' ? '' : '_resumed';
    results[`hbone_new_connections${kind}${suffix}_per_s`] = r.value;
    record(`hbone_new_connection${kind}`, r);
    // What was measured: 0 with full handshakes; just under 1 resumed (each client loop's first handshake is a full one).
    if (mode === 'resumed') results[`hbone_resumed_handshakes${suffix}_fraction`] = fraction;
  }
  if (only.has('pooled')) {
    const pooled = await withNodeCpu(nodes, () => pooledTunnelsPerSecond(nodes, echoPort));
    results[`hbone_pooled_tunnels${suffix}_per_s`] = pooled.value;
    record('hbone_pooled_tunnel', pooled);
  }
  if (only.has('haproxy')) {
    const reuse = await haproxyPairConnectionsPerSecond(echoPort, true);
    const noReuse = await haproxyPairConnectionsPerSecond(echoPort, false);
    Object.assign(results, {
      haproxy_pair_tls_new_connections_per_s: reuse.value,
      haproxy_pair_tls_new_connection_cpu_ms: cpuPerConnection(reuse),
      haproxy_pair_tls_new_connection_with_client_cpu_ms: cpuPerConnection({ value: reuse.value, cpuMs: reuse.withClientCpuMs }),
      haproxy_pair_tls_full_new_connections_per_s: noReuse.value,
      haproxy_pair_tls_full_new_connection_cpu_ms: cpuPerConnection(noReuse),
      haproxy_pair_tls_full_new_connection_with_client_cpu_ms: cpuPerConnection({ value: noReuse.value, cpuMs: noReuse.withClientCpuMs }),
    });
    const vs = (a: number | undefined, b: number): number | undefined => (a === undefined ? undefined : a / b);
    const ratios = {
      // Like with like: full handshakes against HAProxy with no-ssl-reuse, resumed ones against its default (reuse).
      hbone_new_connections_vs_haproxy_pair_tls_full: vs(results.hbone_new_connections_per_s, noReuse.value),
      hbone_new_connections_resumed_vs_haproxy_pair_tls: vs(results.hbone_new_connections_resumed_per_s, reuse.value),
      hbone_pooled_tunnels_vs_haproxy_pair_tls: vs(results.hbone_pooled_tunnels_per_s, reuse.value),
    };
    for (const [k, v] of Object.entries(ratios)) if (v !== undefined) results[k] = v;
  }
  return results;
}

interface NodeCpu {
  value: number;
  /** This process, all threads. */
  cpuMs: number;
  /** This thread: the client loop (and node A's runtime, and the echo server). */
  clientLoopMs: number;
  /** Node B's thread, when it has one. */
  nodeBMs: number | undefined;
}

/** Runs `f` and reports the CPU time this process spent meanwhile, in all, on this thread and on node B's. */
async function withNodeCpu(nodes: Nodes, f: () => Promise<number>): Promise<NodeCpu> {
  const nodeB0 = await nodes.nodeBCpuMicros();
  const thread0 = process.threadCpuUsage();
  const r = await withCpu(f);
  const thread = process.threadCpuUsage(thread0);
  const nodeB1 = await nodes.nodeBCpuMicros();
  return { ...r, clientLoopMs: (thread.user + thread.system) / 1000, nodeBMs: nodeB0 === undefined || nodeB1 === undefined ? undefined : (nodeB1 - nodeB0) / 1000 };
}

/** Runs `f` and reports the CPU time this process (both runtimes, all threads) spent meanwhile. */
async function withCpu(f: () => Promise<number>): Promise<{ value: number; cpuMs: number }> {
  const before = process.cpuUsage();
  const value = await f();
  const used = process.cpuUsage(before);
  return { value, cpuMs: (used.user + used.system) / 1000 };
}

export async function benchHbone(): Promise<Record<string, number>> {
  setLogLevel('warn');
  const results: Record<string, number> = {};
  const iperfPort = await freePort(IP.server);
  const iperfd = await spawnReady('iperf3', ['-s', '-B', IP.server, '-p', String(iperfPort)], IP.server, iperfPort);
  try {
    const direct = await iperf(IP.server, iperfPort);
    const nodes = await startNodes(iperfPort);
    try {
      const plain = await withCpu(() => iperf('127.0.0.2', nodes.plainPort));
      const hbone = await withCpu(() => iperf('127.0.0.1', nodes.hbonePort));
      // CPU per GB of both runtimes (this process) is steadier than Gbit/s on a shared 2-core machine.
      const cpuPerGb = (r: { value: number; cpuMs: number }): number => r.cpuMs / ((r.value * SECONDS) / 8);
      Object.assign(results, {
        iperf_direct_gbps: direct,
        iperf_plaintext_two_nodes_gbps: plain.value,
        iperf_hbone_two_nodes_gbps: hbone.value,
        iperf_hbone_vs_plaintext: hbone.value / plain.value,
        iperf_hbone_vs_direct: hbone.value / direct,
        iperf_plaintext_cpu_ms_per_gb: cpuPerGb(plain),
        iperf_hbone_cpu_ms_per_gb: cpuPerGb(hbone),
      });
    } finally {
      await nodes.close();
    }
    const haproxyPlain = await iperfThroughHaproxyPair(iperfPort, false);
    const haproxyTls = await iperfThroughHaproxyPair(iperfPort, true);
    Object.assign(results, {
      iperf_haproxy_pair_plaintext_gbps: haproxyPlain,
      iperf_haproxy_pair_tls_gbps: haproxyTls,
      iperf_haproxy_pair_tls_vs_plaintext: haproxyTls / haproxyPlain,
      iperf_haproxy_pair_tls_vs_direct: haproxyTls / (results.iperf_direct_gbps ?? 0),
      iperf_hbone_vs_haproxy_pair_tls: (results.iperf_hbone_two_nodes_gbps ?? 0) / haproxyTls,
    });
  } finally {
    iperfd.kill();
  }
  const nginx = await startNginx(IP.server);
  const echo = net.createServer({ allowHalfOpen: true }, (s) => s.pipe(s));
  await new Promise<void>((resolve) => echo.listen(0, IP.server, resolve));
  try {
    const nodes = await startNodes(nginx.port);
    try {
      const direct = await wrk(nginx.port, IP.server);
      const plain = await withCpu(() => wrk(nodes.plainPort, '127.0.0.2'));
      const hbone = await withCpu(() => wrk(nodes.hbonePort));
      const cpuPerRequest = (r: { value: number; cpuMs: number }): number => (r.cpuMs * 1000) / (r.value * SECONDS);
      Object.assign(results, {
        wrk_direct_rps: direct,
        wrk_plaintext_two_nodes_rps: plain.value,
        wrk_hbone_two_nodes_rps: hbone.value,
        wrk_hbone_vs_plaintext: hbone.value / plain.value,
        wrk_hbone_vs_direct: hbone.value / direct,
        wrk_plaintext_cpu_us_per_request: cpuPerRequest(plain),
        wrk_hbone_cpu_us_per_request: cpuPerRequest(hbone),
      });
    } finally {
      await nodes.close();
    }
    // Connection setup on two event loops, as the HAProxy measure has (its process, with both its nodes on one thread, and
    // this one's client loop): here node A's HBONE client with the client loop, node B on its own thread.
    const threaded = await startNodes((echo.address() as net.AddressInfo).port, 'thread');
    try {
      Object.assign(results, await connectionSetup(threaded, (echo.address() as net.AddressInfo).port));
    } finally {
      await threaded.close();
    }
  } finally {
    nginx.child.kill();
    echo.close();
  }
  return results;
}

if (import.meta.url === `file://${process.argv[1] ?? ''}`) {
  benchHbone().then(
    (r) => console.log(JSON.stringify(r, null, 2)),
    (err: unknown) => {
      console.error(err);
      process.exitCode = 1;
    },
  );
}
