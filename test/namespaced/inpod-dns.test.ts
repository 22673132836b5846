// DNS capture in in-pod mode on a real kernel (root): weft-cni with `dnsCapture: true` sends the pod's UDP and TCP port 53 to
// 15053 inside the pod, where the runtime listens (sockets made in the pod's namespace) and answers from its DNS proxy with the
// pod's namespace as the search path; the rest of in-pod capture is unchanged beside it, and DEL drops the pod's DNS listener.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nsRun } from '../helpers/netns-exec.js';
import { askPeerAddress, resolveTcp, resolveUdp, startInpodNode, startPodServers, type InpodNode, type InpodRuntime } from '../helpers/netns-inpod.js';
import { snapshotNetns, type Pod, type SimulatedNode } from '../helpers/netns-topology.js';
import { hasCommand, isRoot } from '../helpers/requirements.js';

const missing = !isRoot() ? 'requires root (CAP_NET_ADMIN, CAP_SYS_ADMIN): run as root, as CI does' : ['iptables-nft-restore', 'ip'].find((c) => !hasCommand(c));
if (missing !== undefined) console.log(`inpod-dns: skipped: ${missing.startsWith('requires') ? missing : `requires ${missing} (install the Debian packages listed in .ci/run)`}`);

describe.skipIf(missing !== undefined)('in-pod DNS capture (15053 inside each pod)', () => {
  let fixture: InpodNode | undefined;
  let node: SimulatedNode;
  let runtime: InpodRuntime;
  let a: Pod;
  let b: Pod;

  beforeAll(async () => {
    fixture = await startInpodNode({
      plugin: { dnsCapture: true },
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
    ({ node, runtime } = fixture);
    a = await node.addPod('a');
    b = await node.addPod('b');
    fixture.procs.push(await startPodServers(b));
  }, 120_000);

  afterAll(() => fixture?.close(), 60_000);

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
