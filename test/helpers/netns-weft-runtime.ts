// Starts the weft runtime (`weft run --config`) inside a simulated node's runtime namespace with transparent listeners, and reads its
// access log and metrics; with `preserveSource` it connects upstream from the client's address (`preserveSourceIp`).
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { nsRun } from './netns-exec.js';
import type { SimulatedNode } from './netns-topology.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** One access-log line in the tests' vocabulary (the runtime's own field names are mapped in `normalize`). */
export interface AccessLine {
  direction: string;
  src: string;
  /** The original destination the client dialed. */
  dst: string;
  upstream: string | undefined;
  requestBytes: number;
  responseBytes: number;
  /** The line as the runtime wrote it (identity and security-policy fields included). */
  raw: Record<string, unknown>;
}

export interface RuntimeWorkload {
  name: string;
  namespace: string;
  ip: string;
  labels?: Record<string, string>;
  serviceAccount?: string;
  /** Index of the SimulatedNode hosting it (weft.yaml `node: node-<index>`); absent means every node treats it as its own. */
  node?: number;
  protocol?: 'HBONE' | 'TCP';
}
export interface RuntimeService {
  name: string;
  namespace: string;
  vip: string;
  port: number;
  targetPort: number;
  selector: Record<string, string>;
}
export interface RuntimeOptions {
  workloads?: RuntimeWorkload[];
  services?: RuntimeService[];
  /** Upstream connections from the client's own address (weft.yaml `preserveSourceIp`). */
  preserveSource?: boolean;
  /** Accept HBONE on a transparent 0.0.0.0:15008 (where node setup's TPROXY sends it) with workload certificates from the built-in CA rooted in `caDir`, shared by the nodes that must trust each other. */
  hbone?: { caDir: string };
  /** Runs the DNS proxy on 0.0.0.0:15053, where node setup's dnsCapture DNATs pod DNS; unknown names go to `upstreams`. */
  dns?: { upstreams: string[] };
}

export interface RuntimeHandle {
  lines(): AccessLine[];
  waitFor(predicate: (line: AccessLine) => boolean, timeoutMs?: number): Promise<AccessLine>;
  /** /stats/prometheus text (real runtime only). */
  metrics(): Promise<string>;
  stop(): Promise<void>;
}

const text = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

function normalize(raw: Record<string, unknown>): AccessLine {
  if (raw.kind === 'tcp') {
    return {
      direction: String(raw.direction),
      src: String(raw.source_address),
      dst: String(raw.downstream_local_address),
      upstream: text(raw.upstream_host),
      requestBytes: Number(raw.bytes_received),
      responseBytes: Number(raw.bytes_sent),
      raw,
    };
  }
  return {
    direction: String(raw.direction),
    src: String(raw.src),
    dst: String(raw.dst),
    upstream: text(raw.upstream),
    requestBytes: Number(raw.bytesSent),
    responseBytes: Number(raw.bytesReceived),
    raw,
  };
}

function parseLines(text: string): AccessLine[] {
  return text
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => normalize(JSON.parse(l) as Record<string, unknown>));
}

function weftConfig(node: SimulatedNode, opts: RuntimeOptions, accessLogPath: string): string {
  return stringify({
    node: `node-${node.index}`,
    listeners: {
      outbound: { address: '0.0.0.0:15001', transparent: true },
      inbound: { address: '0.0.0.0:15006', transparent: true },
      explicitProxy: { address: '127.0.0.1:0' },
      admin: '127.0.0.1:0',
      metrics: '127.0.0.1:15020',
      readiness: '127.0.0.1:0',
      ...(opts.hbone === undefined ? {} : { hbone: { address: '0.0.0.0:15008', transparent: true } }),
      ...(opts.dns === undefined ? {} : { dns: '0.0.0.0:15053' }),
    },
    ...(opts.dns === undefined ? {} : { dns: { upstreams: opts.dns.upstreams, timeoutMs: 300, attempts: 1 } }),
    ...(opts.hbone === undefined ? {} : { identity: { caDir: opts.hbone.caDir } }),
    accessLog: { enabled: true, path: accessLogPath },
    preserveSourceIp: opts.preserveSource === true,
    workloads: (opts.workloads ?? []).map((w) => ({
      name: w.name,
      namespace: w.namespace,
      addresses: [w.ip],
      labels: w.labels ?? {},
      ...(w.serviceAccount === undefined ? {} : { serviceAccount: w.serviceAccount }),
      ...(w.node === undefined ? {} : { node: `node-${w.node}` }),
      ...(w.protocol === undefined ? {} : { protocol: w.protocol }),
    })),
    services: (opts.services ?? []).map((s) => ({ name: s.name, namespace: s.namespace, addresses: [s.vip], ports: [{ port: s.port, targetPort: s.targetPort }], selector: s.selector })),
  });
}

/** Polls an access log until a line matches; the error lists what was there. */
export async function waitForLine<T>(lines: () => T[], predicate: (line: T) => boolean, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = lines().find(predicate);
    if (found !== undefined) return found;
    if (Date.now() > deadline) throw new Error(`no matching access-log line within ${timeoutMs} ms; got ${JSON.stringify(lines())}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

export async function startRuntime(node: SimulatedNode, opts: RuntimeOptions = {}): Promise<RuntimeHandle> {
  const accessLogPath = path.join(node.workDir, `access-${Date.now()}.log`);
  const configPath = path.join(node.workDir, 'weft.yaml');
  writeFileSync(configPath, weftConfig(node, opts, accessLogPath));
  const child: ChildProcess = spawn('ip', ['netns', 'exec', node.runtimeNs, process.execPath, '--import', 'tsx', path.join(repoRoot, 'runtime/cli.ts'), 'run', '--config', configPath], {
    cwd: repoRoot,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  // Logs are JSON lines on stderr; "weft started" follows the listeners being bound.
  const started = new Promise<void>((resolve, reject) => {
    let log = '';
    const timer = setTimeout(() => reject(new Error(`weft did not start within 20 s: ${log}`)), 20_000);
    child.stderr?.on('data', (d: Buffer) => {
      log += d.toString();
      if (log.includes('"weft started"')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`weft exited with ${code}: ${log}`));
    });
  });
  child.stdout?.resume();
  await started;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const lines = (): AccessLine[] => (existsSync(accessLogPath) ? parseLines(readFileSync(accessLogPath, 'utf8')) : []);
  return {
    lines,
    waitFor: (predicate, timeoutMs) => waitForLine(lines, predicate, timeoutMs),
    async metrics() {
      const script = "fetch('http://127.0.0.1:15020/stats/prometheus').then(async (r) => process.stdout.write(await r.text()))";
      return (await nsRun(node.runtimeNs, process.execPath, ['-e', script])).stdout;
    },
    async stop() {
      child.kill('SIGKILL');
      await exited;
    },
  };
}
