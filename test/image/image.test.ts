// The container image, built once per run with the command `npm run image` runs, then run with podman (runc, host
// network, as deploy/image/podman-env.ts sets it up): `weft version`, `weft validate` on the shipped ConfigMap, the
// quickstart serving requests from outside the container, SIGTERM draining inside the grace period, the shipped config
// with the DaemonSet's security context opening exactly the declared ports, and the CNI installer mode against
// temporary host directories.
import { execFile, execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, parseAllDocuments, stringify } from 'yaml';
import { decodePluginConfig } from '../../cni/cni-config.js';
import { callAgent } from '../../cni/agent-client.js';
import { DEFAULT_PORTS } from '../../runtime/config/defaults.js';
import { podman, podmanAsync } from '../../deploy/image/podman-env.js';
import { freePort } from '../helpers/free-port.js';
import { hasCommand, isRoot, requireCommands, requireRoot } from '../helpers/requirements.js';

const run = promisify(execFile);
const REPO = path.resolve(import.meta.dirname, '../..');
const IMAGE = 'localhost/weft:test';
const TOOLS = ['podman', 'buildah', 'runc', 'debootstrap', 'strip', 'curl'];

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- Kubernetes manifests are schemaless YAML walked by path here
type Doc = Record<string, any>;
const manifest = (file: string): Doc[] => parseAllDocuments(readFileSync(path.join(REPO, 'deploy', file), 'utf8')).map((d) => d.toJS() as Doc);
const [configMap] = manifest('weft-config.yaml');
const [daemonSet] = manifest('weft-daemonset.yaml');
const containerSpec = (name: string): Doc => (daemonSet!.spec.template.spec.containers as Doc[]).find((c) => c.name === name)!;
const inpodOverlay = (file: string): Doc[] => parseAllDocuments(readFileSync(path.join(REPO, 'examples/kubernetes-inpod', file), 'utf8')).map((d) => d.toJS() as Doc);

const canRun = isRoot() && TOOLS.every(hasCommand);
const work = mkdtempSync(path.join(tmpdir(), 'weft-image-test-'));
const containers: string[] = [];
let built = '';

function name(role: string): string {
  const n = `weft-test-${process.pid}-${role}`;
  containers.push(n);
  return n;
}

beforeAll(async () => {
  if (!canRun) return;
  // The image step of `npm run image` on this checkout's build (npm ci built dist/, the addon and the plugins).
  const { stdout } = await run(process.execPath, [path.join(REPO, 'dist/deploy/image/image-build.js'), '--tag', IMAGE], { cwd: REPO, maxBuffer: 16 << 20 });
  built = stdout.trim();
  process.stdout.write(`image test: ${built}\n`);
}, 20 * 60_000);

afterAll(() => {
  for (const c of containers) {
    try {
      podman(['rm', '--force', '--time', '0', c]);
    } catch {
      // already gone
    }
  }
  rmSync(work, { recursive: true, force: true });
});

function skipUnlessRunnable(ctx: { skip(note?: string): never }): void {
  requireRoot(ctx);
  requireCommands(ctx, ...TOOLS);
}

async function until<T>(probe: () => Promise<T | undefined>, what: string, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const httpStatus = (url: string): Promise<number | undefined> =>
  new Promise((resolve) => {
    http.get(url, (res) => {
      res.resume();
      resolve(res.statusCode);
    }).once('error', () => resolve(undefined));
  });

describe('the image', () => {
  it('was built and answers weft version as its non-root user', async (ctx) => {
    skipUnlessRunnable(ctx);
    expect(built).toMatch(/^localhost\/weft:test [0-9a-f]{12}: [\d.]+ MB, built in [\d.]+ s$/);
    const { stdout } = await podmanAsync(['run', '--rm', '--network', 'host', IMAGE, 'version']);
    expect(stdout).toMatch(/^weft 0\.1\.0 \(node v24\.\d+\.\d+\)\n$/);
    const id = await podmanAsync(['run', '--rm', '--network', 'host', '--entrypoint', 'id', IMAGE]);
    expect(id.stdout).toContain('uid=1337(weft)');
  });

  it('validates the weft.yaml the ConfigMap ships', async (ctx) => {
    skipUnlessRunnable(ctx);
    const dir = path.join(work, 'validate');
    mkdirSync(dir);
    writeFileSync(path.join(dir, 'weft.yaml'), configMap!.data['weft.yaml'] as string);
    const { stdout } = await podmanAsync(['run', '--rm', '--network', 'host', '-v', `${dir}:/etc/weft:ro`, IMAGE, 'validate', '/etc/weft/weft.yaml']);
    expect(stdout).toMatch(/^\/etc\/weft\/weft\.yaml: valid/);
  });
});

describe('the quickstart in the image', () => {
  const demos: http.Server[] = [];
  let ports: { explicitProxy: number; readiness: number; metrics: number; local: number };
  let ctr = '';

  beforeAll(async () => {
    if (!canRun) return;
    // The quickstart as shipped, with free ports (its own are fixed) and the plugin from the image's /app/plugins.
    const config = parse(readFileSync(path.join(REPO, 'examples/quickstart/weft.yaml'), 'utf8')) as Doc;
    ports = { explicitProxy: await freePort(), readiness: await freePort(), metrics: await freePort(), local: await freePort() };
    config.listeners = {
      outbound: { address: `127.0.0.1:${await freePort()}` },
      inbound: { address: `127.0.0.1:${await freePort()}` },
      explicitProxy: { address: `127.0.0.1:${ports.explicitProxy}` },
      admin: `127.0.0.1:${await freePort()}`,
      metrics: `127.0.0.1:${ports.metrics}`,
      readiness: `127.0.0.1:${ports.readiness}`,
    };
    config.limits = { drainDeadlineMs: 3000 };
    config.localPorts[0].listen = `127.0.0.1:${ports.local}`;
    config.plugins[0].url = 'file:///app/plugins/header-rewrite/build/release.wasm';
    const workloadIps: Record<string, string[]> = {};
    for (const w of config.workloads as Doc[]) (workloadIps[w.labels.app as string] ??= []).push(w.addresses[0] as string);
    for (const svc of config.services as Doc[]) {
      const port = await freePort();
      svc.ports[0].targetPort = port;
      for (const ip of workloadIps[svc.name as string] ?? []) {
        const s = http.createServer((req, res) => res.end(JSON.stringify({ name: svc.name, mesh: req.headers['x-mesh'] ?? null })));
        await new Promise<void>((r) => s.listen(port, ip, r));
        demos.push(s);
      }
    }
    const dir = path.join(work, 'quickstart');
    mkdirSync(dir);
    writeFileSync(path.join(dir, 'weft.yaml'), stringify(config));
    ctr = name('quickstart');
    podman(['run', '--detach', '--name', ctr, '--network', 'host', '-v', `${dir}:/etc/weft:ro`, IMAGE]);
    await until(async () => ((await httpStatus(`http://127.0.0.1:${ports.readiness}/healthz/ready`)) === 200 ? true : undefined), 'the container to be ready');
  }, 120_000);

  afterAll(async () => {
    for (const s of demos) await new Promise((r) => s.close(r));
  });

  it('serves the curl lines from outside the container: L7 with the Wasm plugin, L4 over SOCKS5, a local port', async (ctx) => {
    skipUnlessRunnable(ctx);
    const proxy = `http://127.0.0.1:${ports.explicitProxy}`;
    const l7 = await run('curl', ['-si', '-x', proxy, 'http://reviews.default:9080/']);
    expect(l7.stdout).toMatch(/x-served-by: weft header-rewrite plugin/);
    expect(l7.stdout).toContain('"mesh":"weft"');
    const l4 = await run('curl', ['-s', '--socks5-hostname', `127.0.0.1:${ports.explicitProxy}`, 'http://ratings.default.svc.cluster.local:9080/']);
    expect(JSON.parse(l4.stdout)).toEqual({ name: 'ratings', mesh: null });
    const local = await run('curl', ['-s', `http://127.0.0.1:${ports.local}/`]);
    expect(JSON.parse(local.stdout)).toEqual({ name: 'productpage', mesh: null });
    const rss = podman(['exec', ctr, 'sh', '-c', 'grep VmRSS /proc/1/status']).trim();
    process.stdout.write(`image test: quickstart container after 3 requests, ${rss}\n`);
    expect(await httpStatus(`http://127.0.0.1:${ports.metrics}/stats/prometheus`)).toBe(200);
  });

  it('drains on SIGTERM: an open connection is closed at the drain deadline and the process exits 0 within the grace period', async (ctx) => {
    skipUnlessRunnable(ctx);
    // A kept-alive connection through the local port (productpage, L4), open when the signal arrives.
    const socket = net.connect(ports.local, '127.0.0.1');
    await new Promise<void>((r) => socket.once('connect', r));
    socket.write('GET / HTTP/1.1\r\nhost: productpage\r\n\r\n');
    await new Promise<void>((r) => socket.once('data', () => r()));
    const closed = new Promise<void>((r) => socket.once('close', () => r()));
    socket.on('error', () => undefined);
    const grace = 20;
    const started = Date.now();
    await podmanAsync(['stop', '--time', String(grace), ctr]);
    const seconds = (Date.now() - started) / 1000;
    await closed;
    const [exitCode, oomOrKilled] = podman(['inspect', '--format', '{{.State.ExitCode}} {{.State.OOMKilled}}', ctr]).trim().split(' ');
    // 137 would be the SIGKILL podman sends when the grace period runs out.
    expect(exitCode).toBe('0');
    expect(oomOrKilled).toBe('false');
    // The access log line of the held connection says the drain closed it.
    const held = podman(['logs', ctr]).split('\n').filter((l) => l.includes('"listener":"local-port"')).map((l) => JSON.parse(l) as Doc);
    expect(held.at(-1)).toMatchObject({ close_reason: 'drained', destination_service: 'productpage.default.svc.cluster.local' });
    process.stdout.write(`image test: SIGTERM to exit ${seconds.toFixed(1)} s (drain deadline 3 s, grace ${grace} s)\n`);
  });
});

describe("the shipped config with the DaemonSet's security context", () => {
  it('opens exactly the declared ports (plus the loopback admin port) and answers the probe and metrics routes', async (ctx) => {
    skipUnlessRunnable(ctx);
    const dir = path.join(work, 'daemonset');
    mkdirSync(dir);
    writeFileSync(path.join(dir, 'weft.yaml'), configMap!.data['weft.yaml'] as string);
    const weft = containerSpec('weft');
    const caps = weft.securityContext.capabilities as { add: string[] };
    const ctr = name('daemonset');
    // Its own network namespace (as the pod's), root with only the added capabilities, read-only root filesystem.
    podman(['run', '--detach', '--name', ctr, '--network', 'none', '--user', '0', '--cap-drop', 'ALL', '--cap-add', caps.add.join(','),
      '--read-only', '--tmpfs', '/tmp', '-v', `${dir}:/etc/weft:ro`, IMAGE, ...(weft.args as string[])]);
    const probe = weft.readinessProbe.httpGet as { path: string; port: number };
    const get = (port: number, p: string): string =>
      podman(['exec', ctr, 'node', '-e', `fetch('http://127.0.0.1:${port}${p}').then((r) => process.stdout.write(String(r.status)), () => process.stdout.write('down'))`]);
    await until(() => Promise.resolve(get(probe.port, probe.path) === '200' ? true : undefined), 'readiness in the DaemonSet configuration');
    const listening = podman(['exec', ctr, 'ss', '-Hltn']).trim().split('\n').map((l) => l.trim().split(/\s+/)[3]!);
    const published = listening.filter((a) => !a.startsWith('127.')).map((a) => Number(a.slice(a.lastIndexOf(':') + 1))).sort();
    expect(published).toEqual((weft.ports as Doc[]).map((p) => p.containerPort as number).sort());
    // What stays on loopback (admin, the local-mode explicit proxy) is unreachable from outside the pod.
    const local = listening.filter((a) => a.startsWith('127.')).map((a) => Number(a.slice(a.lastIndexOf(':') + 1)));
    for (const port of local) expect([DEFAULT_PORTS.admin, DEFAULT_PORTS.explicitProxy]).toContain(port);
    const metrics = (weft.ports as Doc[]).find((p) => p.name === 'metrics')!.containerPort as number;
    expect(get(metrics, daemonSet!.spec.template.metadata.annotations['prometheus.io/path'] as string)).toBe('200');
    const rss = podman(['exec', ctr, 'sh', '-c', 'grep VmRSS /proc/1/status']).trim();
    process.stdout.write(`image test: idle runtime in the DaemonSet configuration, ${rss}\n`);
  });
});

describe('the CNI installer mode', () => {
  /** Every file under dir with bytes, mode, inode and mtime. */
  function snapshot(dir: string): Record<string, string> {
    const out: Record<string, string> = {};
    for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
      const file = path.join(entry.parentPath, entry.name);
      const st = statSync(file);
      out[path.relative(dir, file)] = `${st.isFile() ? readFileSync(file).toString('base64') : 'dir'} ${st.mode} ${st.ino} ${st.mtimeMs}`;
    }
    return out;
  }
  const bytes = (snap: Record<string, string>): Record<string, string> => Object.fromEntries(Object.entries(snap).map(([k, v]) => [k, v.split(' ').slice(0, 2).join(' ')]));

  it('writes a runnable weft-cni and a valid chained conflist, changes nothing the second time, and restores the directories byte for byte on SIGTERM', async (ctx) => {
    skipUnlessRunnable(ctx);
    const host = path.join(work, 'host');
    const [bin, conf, state, cfg] = ['opt/cni/bin', 'etc/cni/net.d', 'var/run/weft-cni', 'etc/weft'].map((d) => path.join(host, d));
    for (const d of [bin, conf, state, cfg]) mkdirSync(d!, { recursive: true });
    writeFileSync(path.join(bin!, 'bridge'), 'the primary CNI plugin', { mode: 0o755 });
    writeFileSync(path.join(conf!, '10-bridge.conf'), '{"cniVersion":"1.0.0","name":"pods","type":"bridge","bridge":"cni0","ipam":{"type":"host-local","subnet":"10.244.0.0/24"}}');
    writeFileSync(path.join(cfg!, 'cni-plugin.json'), configMap!.data['cni-plugin.json'] as string);
    const before = snapshot(path.join(host, 'opt'));
    const beforeConf = snapshot(path.join(host, 'etc/cni'));

    const install = containerSpec('install-cni');
    const [program, ...args] = install.command as string[];
    const mounts = ['-v', `${bin}:/host/opt/cni/bin`, '-v', `${conf}:/host/etc/cni/net.d`, '-v', `${state}:/var/run/weft-cni`, '-v', `${cfg}:/etc/weft:ro`];
    const ctr = name('install-cni');
    podman(['run', '--detach', '--name', ctr, '--network', 'none', '--user', '0', '--cap-drop', 'ALL', '--read-only', '--tmpfs', '/tmp', ...mounts, '--entrypoint', program!, IMAGE, ...args]);
    const probe = install.readinessProbe.exec.command as string[];
    await until(async () => ((await podmanAsync(['exec', ctr, ...probe]).then(() => true, () => false)) ? true : undefined), 'the installer to be ready', 60_000);

    // The plugin runs on the host, outside any container, with the Node and libraries the installer shipped.
    const version = JSON.parse(execFileSync(path.join(bin!, 'weft-cni'), { env: { CNI_COMMAND: 'VERSION', PATH: '/usr/bin:/bin' }, encoding: 'utf8' })) as { supportedVersions: string[] };
    expect(version.supportedVersions).toContain('1.0.0');
    expect(readdirSync(conf!)).toEqual(['10-bridge.conflist']);
    const list = JSON.parse(readFileSync(path.join(conf!, '10-bridge.conflist'), 'utf8')) as { cniVersion: string; name: string; plugins: Doc[] };
    expect(list.plugins.map((p) => p.type as string)).toEqual(['bridge', 'weft-cni']);
    expect(decodePluginConfig({ ...list.plugins[1], cniVersion: list.cniVersion, name: list.name }).ok).toBe(true);

    const installed = { bin: snapshot(path.join(host, 'opt')), conf: snapshot(path.join(host, 'etc/cni')) };
    await podmanAsync(['run', '--rm', '--network', 'none', '--user', '0', '--cap-drop', 'ALL', '--read-only', ...mounts, '--entrypoint', program!, IMAGE,
      ...args.filter((a, i) => a !== '--watch' && a !== '--ready-file' && args[i - 1] !== '--ready-file')]);
    expect({ bin: snapshot(path.join(host, 'opt')), conf: snapshot(path.join(host, 'etc/cni')) }).toEqual(installed);

    await podmanAsync(['stop', '--time', '20', ctr]);
    expect(podman(['inspect', '--format', '{{.State.ExitCode}}', ctr]).trim()).toBe('0');
    expect(bytes(snapshot(path.join(host, 'opt')))).toEqual(bytes(before));
    expect(bytes(snapshot(path.join(host, 'etc/cni')))).toEqual(bytes(beforeConf));
    expect(readdirSync(state!).filter((f) => f === 'install.json')).toEqual([]);
  });
});

describe('in-pod mode from the image (examples/kubernetes-inpod)', () => {
  it("runs the node agent and the runtime with the overlay's security contexts: a pod handed over ZDS gets the runtime's listeners inside its namespace", async (ctx) => {
    skipUnlessRunnable(ctx);
    const [cm] = inpodOverlay('weft-config.yaml');
    const [patch] = inpodOverlay('weft-daemonset.yaml');
    const patched = (n: string): Doc => (patch!.spec.template.spec.containers as Doc[]).find((c) => c.name === n)!;
    const host = path.join(work, 'inpod');
    const [cfg, state, zds] = ['etc/weft', 'var/run/weft-cni', 'var/run/weft'].map((d) => path.join(host, d));
    for (const d of [cfg, state, zds]) mkdirSync(d!, { recursive: true });
    // File source: no API server here; everything else as shipped.
    writeFileSync(path.join(cfg!, 'weft.yaml'), (cm!.data['weft.yaml'] as string).replace(/^source: kubernetes$/m, ''));
    writeFileSync(path.join(cfg!, 'cni-node.yaml'), cm!.data['cni-node.yaml'] as string);
    const node = parse(cm!.data['cni-node.yaml'] as string) as { agentSocket: string; zdsSocket: string };
    const pod = `wtimg${process.pid}`;
    execFileSync('ip', ['netns', 'add', pod]);
    try {
      execFileSync('ip', ['-n', pod, 'link', 'set', 'lo', 'up']);
      const agent = patched('cni-agent');
      const agentCtr = name('inpod-agent');
      const [program, ...args] = agent.command as string[];
      podman(['run', '--detach', '--name', agentCtr, '--network', 'none', '--pid', 'host', '--user', '0', '--cap-drop', 'ALL', '--cap-add', (agent.securityContext.capabilities.add as string[]).join(','),
        '--read-only', '-v', `${cfg}:/etc/weft:ro`, '-v', `${state}:${path.dirname(node.agentSocket)}`, '-v', `${zds}:${path.dirname(node.zdsSocket)}`, '-v', '/var/run/netns:/var/run/netns:rslave',
        '--entrypoint', program!, IMAGE, ...args]);
      await until(async () => ((await podmanAsync(['exec', agentCtr, ...(agent.readinessProbe.exec.command as string[])]).then(() => true, () => false)) ? true : undefined), 'the agent to be ready');

      const weft = containerSpec('weft');
      const runtimeCtr = name('inpod-runtime');
      podman(['run', '--detach', '--name', runtimeCtr, '--network', 'none', '--user', '0', '--cap-drop', 'ALL', '--cap-add', (patched('weft').securityContext.capabilities.add as string[]).join(','),
        '--read-only', '--tmpfs', '/tmp', '-v', `${cfg}:/etc/weft:ro`, '-v', `${zds}:${path.dirname(node.zdsSocket)}`, IMAGE, ...(weft.args as string[])]);
      const probe = weft.readinessProbe.httpGet as { path: string; port: number };
      const ready = (): string => podman(['exec', runtimeCtr, 'node', '-e', `fetch('http://127.0.0.1:${probe.port}${probe.path}').then((r) => process.stdout.write(String(r.status)), () => process.stdout.write('down'))`]);
      // Ready only once the agent's (empty) snapshot is applied.
      await until(() => Promise.resolve(ready() === '200' ? true : undefined), 'the runtime to sync with the agent');

      // The plugin's event, from the host: the answer comes only after the runtime acknowledged the pod.
      const socket = path.join(state!, path.basename(node.agentSocket));
      await callAgent(socket, { op: 'add', uid: 'uid-image', name: 'image', namespace: 'mesh', serviceAccount: '', netns: `/var/run/netns/${pod}` }, 30_000);
      const listening = (): number[] => execFileSync('ip', ['netns', 'exec', pod, 'ss', '-Htln'], { encoding: 'utf8' }).trim().split('\n').filter((l) => l !== '').map((l) => Number(l.trim().split(/\s+/)[3]!.split(':').pop())).sort();
      expect(listening()).toEqual([15001, 15006, 15008]);
      await callAgent(socket, { op: 'del', uid: 'uid-image' }, 30_000);
      await until(() => Promise.resolve(listening().length === 0 ? true : undefined), 'the pod listeners to close');
    } finally {
      execFileSync('ip', ['netns', 'del', pod]);
    }
  }, 120_000);
});
