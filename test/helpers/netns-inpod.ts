// In-pod mode around a SimulatedNode: weft-cni chained with `mode: inpod`, the node agent (`weft-cni agent`) and the real runtime
// (`weft run` with `inpod.socket`) both in the node namespace, and small servers inside pods that report what they see.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { nsRun } from './netns-exec.js';
import { SimulatedNode, type Pod } from './netns-topology.js';
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
  /** Every address of a dual-stack pod (default: `ip` alone). */
  ips?: string[];
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
  opts: {
    workloads: InpodWorkload[];
    caDir: string;
    plugins?: unknown[];
    policies?: unknown[];
    workers?: number;
    /** `weft run --takeover` of the runtime running with this node's config (pass its accessLog so the file stays the same). */
    takeover?: boolean;
    accessLog?: string;
    /** More weft.yaml keys (dns, services, workers). */
    extra?: Record<string, unknown>;
    /** A second runtime beside the first on one node (an upgrade's surge): its own admin port and config file. */
    adminPort?: number;
  },
): Promise<InpodRuntime> {
  const adminPort = opts.adminPort ?? 15000;
  const accessLog = opts.accessLog ?? path.join(node.workDir, `access-${Date.now()}.log`);
  const configPath = path.join(node.workDir, `weft-inpod-${adminPort}.yaml`);
  writeFileSync(
    configPath,
    stringify({
      node: `node-${node.index}`,
      ...(opts.workers === undefined ? {} : { workers: opts.workers }),
      listeners: { outbound: { address: '127.0.0.1:0' }, inbound: { address: '127.0.0.1:0' }, explicitProxy: { address: '127.0.0.1:0' }, admin: `127.0.0.1:${adminPort}`, metrics: '127.0.0.1:0', readiness: '127.0.0.1:0' },
      identity: { caDir: opts.caDir },
      accessLog: { enabled: true, path: accessLog },
      inpod: { socket: paths.zdsSocket },
      plugins: opts.plugins ?? [],
      policies: opts.policies ?? [],
      ...opts.extra,
      workloads: opts.workloads.map((w) => ({
        name: w.name,
        namespace: 'mesh',
        addresses: w.ips ?? [w.ip],
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
      const script = `fetch('http://127.0.0.1:${adminPort}/config_dump').then(async (r) => process.stdout.write(await r.text()))`;
      return JSON.parse((await nsRun(node.nodeNs, process.execPath, ['-e', script])).stdout) as Record<string, unknown>;
    },
  };
}

/** One in-pod node with its agent and runtime running; `start` starts a runtime again (after a kill), `close` undoes everything. */
export interface InpodNode {
  node: SimulatedNode;
  paths: InpodPaths;
  caDir: string;
  runtime: InpodRuntime;
  procs: Proc[];
  start(): Promise<InpodRuntime>;
  close(): Promise<void>;
}

export async function startInpodNode(opts: { plugin?: Record<string, unknown>; workloads: InpodWorkload[]; extra?: Record<string, unknown> }): Promise<InpodNode> {
  const caDir = mkdtempSync(path.join(tmpdir(), 'weft-inpod-ca-'));
  const node = await SimulatedNode.create({ index: 1 });
  const procs: Proc[] = [];
  const close = async (): Promise<void> => {
    for (const p of procs.reverse()) await p.kill().catch(() => undefined);
    await node.destroy();
    rmSync(caDir, { recursive: true, force: true });
  };
  try {
    const paths = useInpodMode(node, opts.plugin);
    procs.push(await startAgent(node, paths));
    const start = async (): Promise<InpodRuntime> => {
      const runtime = await startInpodRuntime(node, paths, { caDir, workloads: opts.workloads, ...(opts.extra === undefined ? {} : { extra: opts.extra }) });
      procs.push(runtime);
      return runtime;
    };
    return { node, paths, caDir, runtime: await start(), procs, start, close };
  } catch (err) {
    await close();
    throw err;
  }
}

/**
 * Inside a pod: TCP :8080 and :8082 answer each connection with the peer address they see and close; HTTP :8081 answers with the
 * request's x-mesh header. Both are the application, which knows nothing of weft.
 */
export function startPodServers(pod: Pod, opts: { /** Dual-stack: listen on :: (IPv4 clients too, shown without the ::ffff: prefix). */ ipv6?: boolean } = {}): Promise<Proc> {
  const any = opts.ipv6 === true ? '::' : '0.0.0.0';
  const script = `
    const net = require('node:net'); const http = require('node:http');
    const peer = (s) => s.end(s.remoteAddress.replace(/^::ffff:/, '') + '\\n');
    net.createServer(peer).listen(8082, '${any}');
    net.createServer(peer).listen(8080, '${any}', () => {
      http.createServer((req, res) => res.end(JSON.stringify({ xMesh: req.headers['x-mesh'] ?? null }))).listen(8081, '${any}', () => console.log('pod servers up'));
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

/** The pod's nameserver (kube-dns' usual ClusterIP): nothing answers there; only capture can. */
const KUBE_DNS = '10.96.0.10';

/** From inside `pod`: an A query over UDP with c-ares (what Node's dns module uses) to `nameserver`, the addresses or the error code. */
export async function resolveUdp(pod: Pod, name: string, nameserver = KUBE_DNS): Promise<string> {
  const script = `const r = new (require('node:dns').promises.Resolver)({ timeout: 2000, tries: 1 }); r.setServers(['${nameserver}']);
    r.resolve4('${name}').then((a) => process.stdout.write(a.join(',')), (e) => process.stdout.write('error ' + e.code));`;
  return (await nsRun(pod.ns, process.execPath, ['-e', script])).stdout;
}

/** From inside `pod`: an A query over TCP (RFC 1035 §4.2.2 framing, dns-packet), the addresses or the error. */
export async function resolveTcp(pod: Pod, name: string): Promise<string> {
  const script = `const p = require(${JSON.stringify(path.join(repoRoot, 'node_modules/dns-packet'))});
    const s = require('node:net').connect({ host: '${KUBE_DNS}', port: 53 }, () => s.write(p.streamEncode({ type: 'query', id: 7, flags: p.RECURSION_DESIRED, questions: [{ type: 'A', name: '${name}' }] })));
    let buf = Buffer.alloc(0);
    s.on('data', (c) => { buf = Buffer.concat([buf, c]); if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) { const r = p.streamDecode(buf); process.stdout.write(r.rcode + ' ' + r.answers.map((a) => a.data).join(',')); s.destroy(); } });
    s.on('error', (e) => process.stdout.write('error ' + e.code));
    setTimeout(() => { process.stdout.write('timeout'); process.exit(0); }, 5000).unref();`;
  return (await nsRun(pod.ns, process.execPath, ['-e', script])).stdout;
}
