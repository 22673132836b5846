// Hot upgrade between real weft processes (`weft run --takeover`), with one event loop and with two worker threads: under L4 and L7 load with a long-lived L4 stream and an HBONE tunnel open, no request fails, twice in a row; a successor that crashes while adopting the sockets, or whose worker fails to start, leaves the old process serving.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import http from 'node:http';
import net from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import { stringify } from 'yaml';
import { CertificateAuthority, createBuiltinCaClient } from '../../runtime/identity/certificate-authority.js';
import { CertificateManager } from '../../runtime/identity/certificate-manager.js';
import { HboneClient } from '../../runtime/hbone/hbone-client.js';
import { freePort } from '../helpers/free-port.js';
import { logMsg, spawnWeft, type WeftProcess } from '../helpers/weft-process.js';
import { startLoad, type LoadTarget } from '../helpers/upgrade-load.js';
import { addressesOf, udpQuery } from '../helpers/dns-client.js';

const APP_IP = '127.0.0.31';
const DRAIN_MS = 1_500;
const APP_ID = 'spiffe://cluster.local/ns/default/sa/app';

interface Ports {
  l4: number;
  l7: number;
  stream: number;
  dns: number;
  admin: number;
}

/**
 * A stream that sends a numbered line every 50 ms and checks what comes back; records when and how it ended. `gapless`:
 * the echoed lines are exactly 1..n in order, so no line was lost or reordered while the stream lived. Only lines at
 * the tail can be missing: those still in flight when the deadline's END_STREAM/FIN crossed them (inherent to a close;
 * how many depends on the machine's load, so it is not asserted).
 */
function pinger(stream: Duplex): { echoedAfter(t: number): boolean; ended: Promise<{ at: number; error: string | undefined; gapless: boolean }> } {
  const echoes: number[] = [];
  let gapless = true;
  let sent = 0;
  let received = '';
  let error: string | undefined;
  stream.setEncoding('utf8');
  stream.on('data', (d: string) => {
    received += d;
    const lines = received.split('\n');
    received = lines.pop() ?? '';
    for (const line of lines) {
      if (line !== `ping ${echoes.length + 1}`) gapless = false;
      echoes.push(performance.now());
    }
  });
  const timer = setInterval(() => {
    if (!stream.destroyed && stream.writable && stream.readable) stream.write(`ping ${++sent}\n`);
  }, 50);
  stream.on('error', (err) => (error = err.message));
  // Like an application socket: when the far side ends, end ours (HBONE streams are half-open capable).
  stream.once('end', () => stream.end());
  const ended = new Promise<{ at: number; error: string | undefined; gapless: boolean }>((resolve) =>
    stream.once('close', () => {
      clearInterval(timer);
      resolve({ at: performance.now(), error, gapless });
    }),
  );
  return { echoedAfter: (t) => echoes.some((e) => e > t), ended };
}

describe.each([1, 2])('hot upgrade (weft run --takeover), workers: %i', (workers) => {
  let dir: string;
  let configFile: string;
  let upstream: http.Server;
  let echo: net.Server;
  let caDir: string;
  let hbonePort: number;
  const env: NodeJS.ProcessEnv = {};
  const processes: WeftProcess[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'weft-upgrade-'));
    caDir = path.join(dir, 'ca');
    CertificateAuthority.load({ trustDomain: 'cluster.local', caDir });
    env.WEFT_TAKEOVER_SOCKET = path.join(dir, 'takeover.sock');
    env.WEFT_LOG_LEVEL = 'info';
    upstream = http.createServer({ keepAliveTimeout: 60_000 }, (_req, res) => res.end('ok'));
    await new Promise<void>((resolve) => upstream.listen(0, APP_IP, resolve));
    echo = net.createServer((s) => {
      s.on('error', () => s.destroy());
      s.pipe(s);
    });
    await new Promise<void>((resolve) => echo.listen(0, APP_IP, resolve));
    hbonePort = await freePort(APP_IP);
    const httpPort = (upstream.address() as net.AddressInfo).port;
    const echoPort = (echo.address() as net.AddressInfo).port;
    configFile = path.join(dir, 'weft.yaml');
    writeFileSync(
      configFile,
      stringify({
        listeners: {
          outbound: { address: '127.0.0.1:0' },
          inbound: { address: '127.0.0.1:0' },
          explicitProxy: { address: '127.0.0.1:0' },
          hbone: { address: `${APP_IP}:${hbonePort}` },
          dns: '127.0.0.1:0',
          admin: '127.0.0.1:0',
          metrics: '127.0.0.1:0',
          readiness: '127.0.0.1:0',
        },
        workers,
        identity: { caDir },
        limits: { drainDeadlineMs: DRAIN_MS },
        accessLog: { enabled: false },
        workloads: [{ name: 'app', namespace: 'default', serviceAccount: 'app', addresses: [APP_IP], protocol: 'HBONE', labels: { app: 'app' } }],
        services: [
          { name: 'web', namespace: 'default', addresses: ['10.96.0.1'], ports: [{ port: 80, targetPort: httpPort }], selector: { app: 'app' } },
          { name: 'web7', namespace: 'default', addresses: ['10.96.0.2'], ports: [{ port: 80, targetPort: httpPort, appProtocol: 'http' }], selector: { app: 'app' } },
          { name: 'echo', namespace: 'default', addresses: ['10.96.0.3'], ports: [{ port: 7, targetPort: echoPort }], selector: { app: 'app' } },
        ],
        // A route makes web7 an L7 destination.
        routes: [{ host: 'web7.default', http: [{ name: 'all', backends: [{ labels: { app: 'app' } }] }] }],
        localPorts: [
          { listen: '127.0.0.1:0', service: 'web.default', port: 80 },
          { listen: '127.0.0.2:0', service: 'web7.default', port: 80 },
          { listen: '127.0.0.3:0', service: 'echo.default', port: 7 },
        ],
      }),
    );
  });

  afterAll(async () => {
    for (const p of processes) p.kill();
    await Promise.all(processes.map((p) => p.exited));
    upstream.closeAllConnections();
    await new Promise((resolve) => upstream.close(resolve));
    await new Promise((resolve) => echo.close(resolve));
    rmSync(dir, { recursive: true, force: true });
  });

  function start(takeover: boolean, nodeArgs: string[] = []): WeftProcess {
    const p = spawnWeft(configFile, { takeover, env, nodeArgs });
    processes.push(p);
    return p;
  }

  async function portsOf(p: WeftProcess): Promise<Ports> {
    const started = await p.waitForLog(logMsg('weft started'));
    const ports = started.ports as { dns: number; admin: number; localPorts: Record<string, number> };
    return { l4: ports.localPorts['127.0.0.1:0'] ?? 0, l7: ports.localPorts['127.0.0.2:0'] ?? 0, stream: ports.localPorts['127.0.0.3:0'] ?? 0, dns: ports.dns, admin: ports.admin };
  }

  const targets = (ports: Ports): LoadTarget[] => [
    { name: 'l7-keepalive', host: '127.0.0.2', port: ports.l7, keepAlive: true, clients: 3 },
    { name: 'l7-new', host: '127.0.0.2', port: ports.l7, keepAlive: false, clients: 2 },
    { name: 'l4-new', host: '127.0.0.1', port: ports.l4, keepAlive: false, clients: 2 },
  ];

  /** Ends every weft this file started (a failed attempt may leave its processes holding the HBONE port). */
  async function stopAll(): Promise<void> {
    for (const p of processes) if (p.child.exitCode === null && p.child.signalCode === null) p.kill();
    await Promise.all(processes.map((p) => p.exited));
  }

  it('hands every socket over twice under load: no failed request, long-lived L4 and HBONE streams last until the drain deadline', { timeout: 120_000 }, async () => {
    await stopAll();
    let current = start(false);
    const ports = await portsOf(current);
    const certs = new CertificateManager({ caClient: createBuiltinCaClient(CertificateAuthority.load({ trustDomain: 'cluster.local', caDir })), ttlSeconds: 3600, isHosted: () => true });
    const hbone = new HboneClient({ certificates: certs });
    const openTunnel = () =>
      hbone.connect({
        sourceIdentity: 'spiffe://cluster.local/ns/default/sa/client',
        destination: { address: APP_IP, port: (echo.address() as net.AddressInfo).port },
        destinationIdentities: [APP_ID],
        via: { address: APP_IP, port: hbonePort },
        timeoutMs: 5_000,
      });
    try {
      for (let round = 1; round <= 2; round++) {
        const load = startLoad(targets(ports));
        const l4Stream = pinger(net.connect({ host: '127.0.0.3', port: ports.stream }));
        const tunnel = pinger(await openTunnel());
        // Load is flowing through the current process before the upgrade starts.
        while (load.completed() < 50) await new Promise((r) => setTimeout(r, 20));

        const next = start(true);
        await next.waitForLog(logMsg('predecessor stopped accepting; it drains its open connections'));
        const releasedAt = performance.now();
        expect(await portsOf(next)).toEqual(ports);
        const successorServing = load.completed();
        // The new process answers DNS on the same port (the socket itself was handed over), and runs every worker.
        expect(addressesOf(await udpQuery(ports.dns, 'web.default'))).toEqual(['10.96.0.1']);
        const dump = (await (await fetch(`http://127.0.0.1:${ports.admin}/config_dump`)).json()) as { workers: { running: number } };
        expect(dump.workers.running).toBe(workers);

        // The old process drains: both streams go on until its deadline, then end without an error.
        const [l4End, tunnelEnd] = await Promise.all([l4Stream.ended, tunnel.ended]);
        for (const end of [l4End, tunnelEnd]) {
          expect(end.error).toBeUndefined();
          // Nothing lost or reordered while the stream lived; only lines in flight at the deadline's FIN go unanswered.
          expect(end.gapless).toBe(true);
          // A lower bound only (load can only delay the close): the streams were not cut at the handover.
          expect(end.at - releasedAt).toBeGreaterThanOrEqual(DRAIN_MS * 0.8);
        }
        expect(l4Stream.echoedAfter(releasedAt)).toBe(true);
        expect(tunnel.echoedAfter(releasedAt)).toBe(true);
        expect(await current.exited).toBe(0);

        // New tunnels reach the successor (the client's pool saw GOAWAY and connected again).
        const fresh = await openTunnel();
        fresh.write('hello\n');
        const [reply] = (await fresh.take(1).toArray()) as Buffer[];
        expect(String(reply)).toBe('hello\n');
        fresh.destroy();

        while (load.completed() < successorServing + 50) await new Promise((r) => setTimeout(r, 20));
        const result = await load.stop();
        expect(result.errors).toEqual([]);
        expect(Object.values(result.failed).reduce((a, b) => a + b, 0)).toBe(0);
        for (const t of targets(ports)) expect(result.ok[t.name], t.name).toBeGreaterThan(0);
        current = next;
      }
    } finally {
      hbone.close();
      certs.close();
    }
  });

  /** Under load, a successor started with `hook` fails; the old process serves every request meanwhile and goes on. */
  async function failedHandover(running: WeftProcess, ports: Ports, hook: string): Promise<number | string> {
    const load = startLoad(targets(ports));
    while (load.completed() < 50) await new Promise((r) => setTimeout(r, 20));
    const doomed = start(true, ['--import', hook]);
    const exit = await doomed.exited;
    await running.waitForLog(logMsg('successor went away before it was ready; still serving'));
    const after = load.completed();
    while (load.completed() < after + 100) await new Promise((r) => setTimeout(r, 20));
    const result = await load.stop();
    expect(result.errors).toEqual([]);
    expect(Object.values(result.failed).reduce((a, b) => a + b, 0)).toBe(0);
    expect(running.child.exitCode).toBeNull();
    return exit;
  }

  it('keeps the old process serving when the successor crashes while adopting the sockets', async () => {
    const running = processes.find((p) => p.child.exitCode === null && p.child.signalCode === null) ?? start(false);
    const ports = await portsOf(running);
    const crash = path.join(dir, 'crash-on-adopt.mjs');
    // Dies the moment it starts accepting on an inherited socket: the worst point of a handover.
    writeFileSync(
      crash,
      "import net from 'node:net';\nconst listen = net.Server.prototype.listen;\nnet.Server.prototype.listen = function (...args) {\n  if (typeof args[0] === 'object' && args[0] !== null && typeof args[0].fd === 'number') process.kill(process.pid, 'SIGKILL');\n  return listen.apply(this, args);\n};\n",
    );
    expect(await failedHandover(running, ports, crash)).toBe('SIGKILL');

    // And it can still be taken over afterwards.
    const next = start(true);
    await next.waitForLog(logMsg('predecessor stopped accepting; it drains its open connections'));
    expect(await running.exited).toBe(0);
    expect(addressesOf(await udpQuery(ports.dns, 'web7.default'))).toEqual(['10.96.0.2']);
  }, 60_000);

  // Only several workers have a thread that can fail after another one started on its share of the sockets.
  if (workers > 1) {
    it('keeps the old process serving when a worker thread of the successor fails to start', async () => {
      const running = processes.find((p) => p.child.exitCode === null && p.child.signalCode === null) ?? start(false);
      const ports = await portsOf(running);
      const failing = path.join(dir, 'second-worker-fails.mjs');
      // The successor's second worker thread throws at start-up, after the first one took its share of the sockets.
      writeFileSync(
        failing,
        "import { createRequire, syncBuiltinESMExports } from 'node:module';\nconst wt = createRequire(import.meta.url)('node:worker_threads');\nconst Original = wt.Worker;\nlet made = 0;\nwt.Worker = class extends Original {\n  constructor(file, opts) {\n    if (++made === 2) super('throw new Error(\"injected: this worker cannot start\")', { ...opts, eval: true });\n    else super(file, opts);\n  }\n};\nsyncBuiltinESMExports();\n",
      );
      expect(await failedHandover(running, ports, failing)).not.toBe(0);
      expect(addressesOf(await udpQuery(ports.dns, 'web.default'))).toEqual(['10.96.0.1']);
    }, 60_000);
  }
});
