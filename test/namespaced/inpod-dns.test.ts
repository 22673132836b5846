// DNS capture in in-pod mode on a real kernel (root): weft-cni with `dnsCapture: true` sends the pod's UDP and TCP port 53 to
// 15053 inside the pod, where the runtime listens (sockets made in the pod's namespace) and answers from its DNS proxy with the
// pod's namespace as the search path; the rest of in-pod capture is unchanged beside it, and DEL drops the pod's DNS listener.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nsRun } from '../helpers/netns-exec.js';
import { askPeerAddress, startAgent, startInpodRuntime, startPodServers, useInpodMode, type InpodRuntime, type Proc } from '../helpers/netns-inpod.js';
import { SimulatedNode, snapshotNetns, type Pod } from '../helpers/netns-topology.js';
import { hasCommand, isRoot } from '../helpers/requirements.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const missing = !isRoot() ? 'requires root (CAP_NET_ADMIN, CAP_SYS_ADMIN): run as root, as CI does' : ['iptables-nft-restore', 'ip'].find((c) => !hasCommand(c));
if (missing !== undefined) console.log(`inpod-dns: skipped: ${missing.startsWith('requires') ? missing : `requires ${missing} (install the Debian packages listed in .ci/run)`}`);

/** The pod's nameserver (kube-dns' usual ClusterIP): nothing answers there; only capture can. */
const KUBE_DNS = '10.96.0.10';

/** From inside `pod`: an A query over UDP with c-ares (what Node's dns module uses), the addresses or the error code. */
async function resolveUdp(pod: Pod, name: string): Promise<string> {
  const script = `const r = new (require('node:dns').promises.Resolver)({ timeout: 2000, tries: 1 }); r.setServers(['${KUBE_DNS}']);
    r.resolve4('${name}').then((a) => process.stdout.write(a.join(',')), (e) => process.stdout.write('error ' + e.code));`;
  return (await nsRun(pod.ns, process.execPath, ['-e', script])).stdout;
}

/** From inside `pod`: an A query over TCP (RFC 1035 §4.2.2 framing, dns-packet), the addresses or the error. */
async function resolveTcp(pod: Pod, name: string): Promise<string> {
  const script = `const p = require(${JSON.stringify(path.join(repoRoot, 'node_modules/dns-packet'))});
    const s = require('node:net').connect({ host: '${KUBE_DNS}', port: 53 }, () => s.write(p.streamEncode({ type: 'query', id: 7, flags: p.RECURSION_DESIRED, questions: [{ type: 'A', name: '${name}' }] })));
    let buf = Buffer.alloc(0);
    s.on('data', (c) => { buf = Buffer.concat([buf, c]); if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) { const r = p.streamDecode(buf); process.stdout.write(r.rcode + ' ' + r.answers.map((a) => a.data).join(',')); s.destroy(); } });
    s.on('error', (e) => process.stdout.write('error ' + e.code));
    setTimeout(() => { process.stdout.write('timeout'); process.exit(0); }, 5000).unref();`;
  return (await nsRun(pod.ns, process.execPath, ['-e', script])).stdout;
}

describe.skipIf(missing !== undefined)('in-pod DNS capture (15053 inside each pod)', () => {
  const procs: Proc[] = [];
  let node: SimulatedNode;
  let caDir: string;
  let runtime: InpodRuntime;
  let a: Pod;
  let b: Pod;

  beforeAll(async () => {
    caDir = mkdtempSync(path.join(tmpdir(), 'weft-inpod-dns-ca-'));
    node = await SimulatedNode.create({ index: 1 });
    const paths = useInpodMode(node, { dnsCapture: true });
    procs.push(await startAgent(node, paths));
    runtime = await startInpodRuntime(node, paths, {
      caDir,
      workloads: [
        { name: 'a', ip: '10.61.1.11', node: 1 },
        { name: 'b', ip: '10.61.1.12', node: 1 },
      ],
      extra: {
        // Upstream: a port where nothing answers, so a forwarded query shows as SERVFAIL quickly.
        dns: { enabled: true, upstreams: ['127.0.0.1:1'], timeoutMs: 100, attempts: 1 },
        services: [
          { name: 'reviews', namespace: 'mesh', addresses: ['10.96.0.21'], ports: [{ port: 9080 }] },
          { name: 'reviews', namespace: 'other', addresses: ['10.96.0.22'], ports: [{ port: 9080 }] },
        ],
      },
    });
    procs.push(runtime);
    a = await node.addPod('a');
    b = await node.addPod('b');
    procs.push(await startPodServers(b));
  }, 120_000);

  afterAll(async () => {
    for (const p of procs.reverse()) await p.kill().catch(() => undefined);
    await node?.destroy();
    rmSync(caDir, { recursive: true, force: true });
  }, 60_000);

  it("resolves a Service's bare name in the pod's own namespace, and a qualified one, over UDP", async () => {
    expect(await resolveUdp(a, 'reviews')).toBe('10.96.0.21');
    expect(await resolveUdp(a, 'reviews.other')).toBe('10.96.0.22');
    expect(await resolveUdp(a, 'reviews.mesh.svc.cluster.local')).toBe('10.96.0.21');
  });

  it('answers over TCP on the same port', async () => {
    expect(await resolveTcp(a, 'reviews')).toBe('NOERROR 10.96.0.21');
  });

  it('forwards names it does not own upstream (SERVFAIL when the upstream is silent), from the proxy, not the pod', async () => {
    expect(await resolveUdp(a, 'example.com')).toBe('error ESERVFAIL');
  });

  it('lists 15053 among the pod ports in /config_dump, and TCP capture keeps working beside DNS capture', async () => {
    const dump = (await runtime.configDump()) as { inpod: { pods: { name: string; ports: number[] }[] } };
    expect(dump.inpod.pods.find((p) => p.name === 'a')?.ports).toEqual([15001, 15006, 15008, 15053]);
    expect(await askPeerAddress(a, b.ip)).toBe(a.ip);
  });

  it('DEL drops the pod DNS listener with its other listeners; a pod added later gets its own', async () => {
    const listening = (await nsRun(a.ns, 'ss', ['-Hlnu', 'sport = :15053'])).stdout;
    expect(listening).toContain('15053');
    await node.delPod(a);
    const dump = (await runtime.configDump()) as { inpod: { pods: { name: string }[] } };
    expect(dump.inpod.pods.map((p) => p.name)).toEqual(['b']);
    const c = await node.addPod('c');
    expect((await snapshotNetns(c.ns)).iptables).toContain('--to-ports 15053');
    expect(await resolveUdp(c, 'reviews')).toBe('10.96.0.21');
  });
});
