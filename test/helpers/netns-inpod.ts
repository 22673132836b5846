// In-pod mode around a SimulatedNode: weft-cni chained with `mode: inpod`, the node agent (`weft-cni agent`) and the real runtime
// (`weft run` with `inpod.socket`) both in the node namespace, and small servers inside pods that report what they see.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { nsRun } from './netns-exec.js';
import type { Pod, SimulatedNode } from './netns-topology.js';
import { waitForLine } from './netns-weft-runtime.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const NATIVE_ADDON = path.join(repoRoot, 'runtime/native/build/Release/weft_socket.node');

export interface InpodPaths {
  zdsSocket: string;
  agentSocket: string;
  agentConfig: string;
}

/** Switches the node's conflist entry to in-pod mode and writes the agent's node config; returns the paths. */
export function useInpodMode(node: SimulatedNode, extra: Record<string, unknown> = {}): InpodPaths {
  const zdsSocket = path.join(node.workDir, 'ztunnel.sock');
  const agentSocket = path.join(node.workDir, 'pluginevent.sock');
  const agentConfig = path.join(node.workDir, 'agent.json');
  const entry = node.conflist.plugins[1] as Record<string, unknown>;
  Object.assign(entry, { mode: 'inpod', agentSocket, agentTimeoutMs: 20_000, ...extra });
  writeFileSync(agentConfig, JSON.stringify({ mode: 'inpod', stateDir: node.stateDir, zdsSocket, agentSocket }));
  return { zdsSocket, agentSocket, agentConfig };
}

export interface Proc {
  child: ChildProcess;
  log(): string;
  /** SIGKILL, as a crash. */
  kill(): Promise<void>;
}

function startProc(ns: string, argv: string[], ready: string, env: NodeJS.ProcessEnv = {}): Promise<Proc> {
  const child = spawn('ip', ['netns', 'exec', ns, ...argv], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  let log = '';
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${argv.join(' ')} not ready within 20 s: ${log}`)), 20_000);
    const onData = (d: Buffer): void => {
      log += d.toString();
      if (log.includes(ready)) {
        clearTimeout(timer);
        resolve({
          child,
          log: () => log,
          kill: async () => {
            child.kill('SIGKILL');
            await exited;
          },
        });
      }
    };
    child.stderr?.on('data', onData);
    child.stdout?.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${argv.join(' ')} exited with ${code}: ${log}`));
    });
  });
}

export function startAgent(node: SimulatedNode, paths: InpodPaths): Promise<Proc> {
  return startProc(node.nodeNs, [path.join(node.cniPath[1] ?? '', 'weft-cni'), 'agent', '--config', paths.agentConfig], '"node agent ready"', { WEFT_NATIVE_ADDON: NATIVE_ADDON });
}

export interface InpodWorkload {
  name: string;
  ip: string;
  node: number;
  protocol?: 'HBONE' | 'TCP';
  annotations?: Record<string, string>;
}

export interface InpodRuntime extends Proc {
  accessLog: string;
  lines(): Record<string, unknown>[];
  waitFor(predicate: (line: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  /** GET /config_dump on the admin port (inside the node namespace). */
  configDump(): Promise<Record<string, unknown>>;
}

export async function startInpodRuntime(
  node: SimulatedNode,
  paths: InpodPaths,
  // takeover: `weft run --takeover` of the runtime running with this node's config (pass its accessLog so the file stays the same).
  opts: { workloads: InpodWorkload[]; caDir: string; plugins?: unknown[]; policies?: unknown[]; workers?: number; takeover?: boolean; accessLog?: string },
): Promise<InpodRuntime> {
  const accessLog = opts.accessLog ?? path.join(node.workDir, `access-${Date.now()}.log`);
  const configPath = path.join(node.workDir, 'weft-inpod.yaml');
  writeFileSync(
    configPath,
    stringify({
      node: `node-${node.index}`,
      ...(opts.workers === undefined ? {} : { workers: opts.workers }),
      listeners: { outbound: { address: '127.0.0.1:0' }, inbound: { address: '127.0.0.1:0' }, explicitProxy: { address: '127.0.0.1:0' }, admin: '127.0.0.1:15000', metrics: '127.0.0.1:0', readiness: '127.0.0.1:0' },
      identity: { caDir: opts.caDir },
      accessLog: { enabled: true, path: accessLog },
      inpod: { socket: paths.zdsSocket },
      plugins: opts.plugins ?? [],
      policies: opts.policies ?? [],
      workloads: opts.workloads.map((w) => ({
        name: w.name,
        namespace: 'mesh',
        addresses: [w.ip],
        node: `node-${w.node}`,
        protocol: w.protocol ?? 'TCP',
        serviceAccount: w.name,
        labels: { app: w.name },
        annotations: w.annotations ?? {},
      })),
    }),
  );
  const proc = await startProc(node.nodeNs, [process.execPath, '--import', 'tsx', path.join(repoRoot, 'runtime/cli.ts'), 'run', '--config', configPath, ...(opts.takeover === true ? ['--takeover'] : [])], '"weft started"');
  const lines = (): Record<string, unknown>[] =>
    existsSync(accessLog)
      ? readFileSync(accessLog, 'utf8')
          .split('\n')
          .filter((l) => l.startsWith('{'))
          .map((l) => JSON.parse(l) as Record<string, unknown>)
      : [];
  return {
    ...proc,
    accessLog,
    lines,
    waitFor: (predicate, timeoutMs) => waitForLine(lines, predicate, timeoutMs),
    async configDump() {
      const script = "fetch('http://127.0.0.1:15000/config_dump').then(async (r) => process.stdout.write(await r.text()))";
      return JSON.parse((await nsRun(node.nodeNs, process.execPath, ['-e', script])).stdout) as Record<string, unknown>;
    },
  };
}

/**
 * Inside a pod: TCP :8080 and :8082 answer each connection with the peer address they see and close; HTTP :8081 answers with the
 * request's x-mesh header. Both are the application, which knows nothing of weft.
 */
export function startPodServers(pod: Pod): Promise<Proc> {
  const script = `
    const net = require('node:net'); const http = require('node:http');
    const peer = (s) => s.end(s.remoteAddress + '\\n');
    net.createServer(peer).listen(8082, '0.0.0.0');
    net.createServer(peer).listen(8080, '0.0.0.0', () => {
      http.createServer((req, res) => res.end(JSON.stringify({ xMesh: req.headers['x-mesh'] ?? null }))).listen(8081, '0.0.0.0', () => console.log('pod servers up'));
    });`;
  return startProc(pod.ns, [process.execPath, '-e', script], 'pod servers up');
}

/** From inside `pod`: connects to ip:8080 and returns what the server said (the address it saw), or the error. */
export async function askPeerAddress(pod: Pod, ip: string, port = 8080, localAddress?: string): Promise<string> {
  const from = localAddress === undefined ? '' : `, localAddress: '${localAddress}'`;
  const script = `const s = require('node:net').connect({ port: ${port}, host: '${ip}'${from} }); let d=''; s.on('data', (c) => d += c); s.on('end', () => process.stdout.write(d.trim())); s.on('error', (e) => process.stdout.write('error ' + e.code)); setTimeout(() => { process.stdout.write('timeout'); process.exit(0); }, 5000).unref();`;
  return (await nsRun(pod.ns, process.execPath, ['-e', script])).stdout;
}

export async function httpGet(pod: Pod, url: string): Promise<string> {
  const script = `fetch('${url}').then(async (r) => process.stdout.write(await r.text()), (e) => process.stdout.write('error ' + (e.cause?.code ?? e.message)))`;
  return (await nsRun(pod.ns, process.execPath, ['-e', script])).stdout;
}
