// DNS proxy benchmark: queries/s and p99 for names weft answers from state, names it forwards (to dnsmasq), forwarded answers it has cached, and dnsmasq asked directly; plus the longest refused-connection gap clients see during a hot upgrade.
// Run: npm run build && flock /tmp/weft-bench.lock node dist/test/bench/dns.js
import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import dnsPacket from 'dns-packet';
import http from 'node:http';
import type net from 'node:net';
import { stringify } from 'yaml';
import { spawnWeftBuilt, type BuiltWeft } from './weft-built.js';
import { startLoad } from '../helpers/upgrade-load.js';

const DURATION_MS = Number(process.env.DNS_BENCH_MS ?? 3_000);
const IN_FLIGHT = 32;

async function freeUdpPort(): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', resolve));
  const port = s.address().port;
  s.close();
  return port;
}

/** Keeps IN_FLIGHT queries outstanding on one socket for DURATION_MS; each reply sends the next. */
async function measure(port: number, name: string | ((n: number) => string)): Promise<{ qps: number; p50: number; p99: number; lost: number }> {
  const socket = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  const sentAt = new Map<number, number>();
  const latencies: number[] = [];
  let nextId = 0;
  let running = true;
  const send = (): void => {
    const n = nextId++;
    const id = n & 0xffff;
    sentAt.set(id, performance.now());
    socket.send(dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'A', class: 'IN', name: typeof name === 'string' ? name : name(n) }] }), port, '127.0.0.1');
  };
  socket.on('message', (msg) => {
    const id = msg.readUInt16BE(0);
    const t = sentAt.get(id);
    if (t === undefined) return;
    sentAt.delete(id);
    latencies.push(performance.now() - t);
    if (running) send();
  });
  const started = performance.now();
  for (let i = 0; i < IN_FLIGHT; i++) send();
  await new Promise((r) => setTimeout(r, DURATION_MS));
  running = false;
  const elapsed = performance.now() - started;
  await new Promise((r) => setTimeout(r, 200));
  socket.close();
  latencies.sort((a, b) => a - b);
  const at = (q: number): number => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? NaN;
  return { qps: Math.round((latencies.length / elapsed) * 1000), p50: Number(at(0.5).toFixed(3)), p99: Number(at(0.99).toFixed(3)), lost: sentAt.size };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), 'weft-dns-bench-'));
  const dnsmasqPort = await freeUdpPort();
  const dnsmasq = spawn('dnsmasq', ['-k', `--port=${dnsmasqPort}`, '--listen-address=127.0.0.1', '--bind-interfaces', '--no-resolv', '--no-hosts', '--user=root', '--pid-file=', '--address=/example.test/192.0.2.7', '--local-ttl=60', '--cache-size=1000'], { stdio: 'ignore' });
  const upstream = http.createServer((_req, res) => res.end('ok'));
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  const configFile = path.join(dir, 'weft.yaml');
  // WEFT_BENCH_WORKERS=2: the same with two worker threads (each takeover then hands every worker's sockets over).
  const workers = Number(process.env.WEFT_BENCH_WORKERS ?? '1');
  writeFileSync(
    configFile,
    stringify({
      workers,
      listeners: { outbound: { address: '127.0.0.1:0' }, inbound: { address: '127.0.0.1:0' }, explicitProxy: { address: '127.0.0.1:0' }, dns: '127.0.0.1:0', admin: '127.0.0.1:0', metrics: '127.0.0.1:0', readiness: '127.0.0.1:0' },
      dns: { upstreams: [`127.0.0.1:${dnsmasqPort}`] },
      accessLog: { enabled: false },
      limits: { drainDeadlineMs: 1000 },
      workloads: [{ name: 'web', namespace: 'default', addresses: ['127.0.0.1'], labels: { app: 'web' } }],
      services: [{ name: 'web', namespace: 'default', addresses: ['10.96.0.1'], ports: [{ port: 80, targetPort: (upstream.address() as net.AddressInfo).port }], selector: { app: 'web' } }],
      localPorts: [{ listen: '127.0.0.1:0', service: 'web.default', port: 80 }],
    }),
  );
  const env = { WEFT_TAKEOVER_SOCKET: path.join(dir, 'takeover.sock') };
  const weft: BuiltWeft = await spawnWeftBuilt(configFile, [], env);
  try {
    const results: Record<string, unknown> = { node: process.version, workers };
    // Interleaved, twice: the machine is shared and noisy. Forwarded and dnsmasq ask a new name each time (dnsmasq
    // answers any *.example.test from its --address rule), so weft's cache of forwarded answers cannot answer them;
    // "cached" asks one name again and again (dnsmasq gives its --address answers a TTL of 60 s with --local-ttl).
    const unique = (n: number): string => `q${n}.example.test`;
    for (let round = 0; round < 2; round++) {
      results[`state_${round}`] = await measure(weft.ports.dns, 'web.default.svc.cluster.local');
      results[`forwarded_${round}`] = await measure(weft.ports.dns, unique);
      results[`cached_${round}`] = await measure(weft.ports.dns, 'www.example.test');
      results[`dnsmasq_${round}`] = await measure(dnsmasqPort, unique);
    }
    // Hot upgrade under new-connection HTTP load through an L4 local port: the longest refused gap any client saw.
    const load = startLoad([{ name: 'l4-new', host: '127.0.0.1', port: weft.ports.localPort, keepAlive: false, clients: 4 }]);
    await new Promise((r) => setTimeout(r, 500));
    let current = weft;
    for (let i = 0; i < 3; i++) {
      const next = await spawnWeftBuilt(configFile, ['--takeover'], env);
      await current.exited;
      current = next;
    }
    await new Promise((r) => setTimeout(r, 500));
    const upgrade = await load.stop();
    results.upgrade = { upgrades: 3, requests: upgrade.ok['l4-new'], failed: upgrade.failed['l4-new'], longest_refused_gap_ms: Number(upgrade.longestRefusedGapMs.toFixed(1)) };
    current.kill();
    process.stdout.write(JSON.stringify(results, null, 2) + '\n');
  } finally {
    weft.kill();
    dnsmasq.kill();
    upstream.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
