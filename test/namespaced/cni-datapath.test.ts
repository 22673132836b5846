// End to end through the tunnel driver this kernel has (vxlan here): pods wired by bridge + host-local, weft-cni chained, the runtime in its own
// namespace behind TPROXY. Capture is asserted from the runtime's access log with the original destination, and from the source address the
// server sees; the geneve variant names the missing kernel feature when it skips.
import { describe, expect, it } from 'vitest';
import { invokePlugin } from '../helpers/netns-cni-runtime.js';
import { startServer, tcpExchange, udpExchange, type PeerServer } from '../helpers/netns-peers.js';
import { SimulatedNode } from '../helpers/netns-topology.js';
import { startRuntime, type RuntimeHandle } from '../helpers/netns-weft-runtime.js';
import { nsMust } from '../helpers/netns-exec.js';
import { kernelHasLinkType, requireCommands, requireKernelFeature, requireRoot } from '../helpers/requirements.js';

type Ctx = Parameters<typeof requireRoot>[0];
const VIP = '10.96.0.10';

function requireNodeTools(ctx: Ctx): void {
  requireRoot(ctx);
  requireCommands(ctx, 'ip', 'iptables-nft-restore', 'ipset', 'nft', 'flock', 'nsenter', 'unshare', '/usr/lib/cni/bridge', '/usr/lib/cni/ptp');
}

async function endToEnd(driver: 'vxlan' | 'geneve', preserveSource: boolean): Promise<void> {
  const node = await SimulatedNode.create({ tunnelDriver: driver });
  const servers: PeerServer[] = [];
  let runtime: RuntimeHandle | undefined;
  try {
    await node.mustSetup();
    const [a, b, c, d] = [await node.addPod('a', 'mesh'), await node.addPod('b', 'mesh'), await node.addPod('c', 'legacy'), await node.addPod('d', 'legacy')];
    runtime = await startRuntime(node, {
      workloads: [a, b, c, d].map((p) => ({ name: p.name, namespace: p.namespace, ip: p.ip, labels: { app: p.name } })),
      services: [{ name: 'svc-b', namespace: 'mesh', vip: VIP, port: 80, targetPort: 8080, selector: { app: 'b' } }],
      preserveSource,
    });
    for (const pod of [b, d]) servers.push(await startServer(pod.ns, 'tcp', 8080), await startServer(pod.ns, 'udp', 5353));
    const rt = runtime;
    const logged = (direction: string, dst: string) => rt.waitFor((l) => l.direction === direction && l.dst === dst);
    const upstreamSource = (client: string): string => (preserveSource ? client : node.runtimeIp);

    // Pod A -> pod B by IP: captured on egress with the original destination; the reply comes back through weft.
    expect(await tcpExchange(a.ns, b.ip, 8080, 'by-ip')).toBe(upstreamSource(a.ip));
    const byIp = await logged('outbound', `${b.ip}:8080`);
    expect(byIp).toMatchObject({ src: expect.stringMatching(new RegExp(`^${a.ip}:`)) as unknown, requestBytes: 6, responseBytes: 6 + `from ${upstreamSource(a.ip)}\n`.length });
    expect(await runtime.metrics()).toMatch(/istio_tcp_connections_opened_total\{[^}]*\} [1-9]/);

    // Pod A -> service VIP: the VIP reaches weft untranslated and weft picks the backend.
    expect(await tcpExchange(a.ns, VIP, 80, 'by-vip')).toBe(upstreamSource(a.ip));
    expect(await logged('outbound', `${VIP}:80`)).toMatchObject({ upstream: `${b.ip}:8080` });

    // An unenrolled pod to an enrolled one is captured on ingress (table 100 -> inbound tunnel -> 15006).
    expect(await tcpExchange(c.ns, b.ip, 8080, 'to-enrolled')).toBe(upstreamSource(c.ip));
    expect(await logged('inbound', `${b.ip}:8080`)).toMatchObject({ src: expect.stringMatching(new RegExp(`^${c.ip}:`)) as unknown });


    // Not captured: unenrolled to unenrolled, UDP, and kubelet-style probes from the node. The server sees the real client,
    // and no access-log line names the destination.
    const before = runtime.lines().length;
    expect(await tcpExchange(c.ns, d.ip, 8080, 'plain')).toBe(c.ip);
    expect(await udpExchange(a.ns, b.ip, 5353, 'udp')).toBe(a.ip);
    expect(await tcpExchange(node.nodeNs, b.ip, 8080, 'probe')).toBe(node.hostIp);
    // A captured marker connection afterwards: once its line is in, any line for the three above would be too.
    await tcpExchange(a.ns, d.ip, 8080, 'marker');
    await logged('outbound', `${d.ip}:8080`);
    const after = runtime.lines().slice(before);
    expect(after.map((l) => l.dst)).toEqual([`${d.ip}:8080`]);

    // DEL of pod A's weft attachment restores direct traffic from A.
    const del = await invokePlugin(node.nodeNs, node.cniPath, 'DEL', a.attachment, { ...node.conflist.plugins[1], cniVersion: '1.0.0', name: 'podnet', prevResult: a.result });
    expect(del.code, del.stdout).toBe(0);
    const count = runtime.lines().length;
    expect(await tcpExchange(a.ns, d.ip, 8080, 'after-del')).toBe(a.ip);
    await tcpExchange(c.ns, b.ip, 8080, 'marker2');
    await logged('inbound', `${b.ip}:8080`);
    expect(runtime.lines().slice(count).map((l) => l.src)).toEqual([expect.stringMatching(new RegExp(`^${c.ip}:`))]);
  } finally {
    for (const s of servers) s.stop();
    await runtime?.stop();
    await node.destroy();
  }
}

describe('pod traffic through weft in a simulated node', () => {
  it('vxlan: pod->pod by IP and by service VIP go through weft, replies return; unenrolled, UDP and probes are not captured; DEL restores direct', async (ctx) => {
    requireNodeTools(ctx);
    requireKernelFeature(ctx, 'vxlan', kernelHasLinkType('vxlan'));
    await endToEnd('vxlan', false);
  });

  it('vxlan with source preservation: weft connects from the client address and replies find their way back (marks 0x210/0x040/0x4d3)', async (ctx) => {
    requireNodeTools(ctx);
    requireKernelFeature(ctx, 'vxlan', kernelHasLinkType('vxlan'));
    await endToEnd('vxlan', true);
  });

  it('geneve: the same, through geneve tunnels', async (ctx) => {
    requireNodeTools(ctx);
    requireKernelFeature(ctx, 'geneve', kernelHasLinkType('geneve'));
    await endToEnd('geneve', false);
  });

  it('DNS capture: pod UDP 53 to any resolver is DNATed to the runtime pod :15053', async (ctx) => {
    requireNodeTools(ctx);
    requireKernelFeature(ctx, 'vxlan', kernelHasLinkType('vxlan'));
    const node = await SimulatedNode.create({ dnsCapture: true });
    let dns: PeerServer | undefined;
    try {
      await node.mustSetup();
      const [a, c] = [await node.addPod('a', 'mesh'), await node.addPod('c', 'legacy')];
      dns = await startServer(node.runtimeNs, 'udp', 15053);
      // The runtime's DNS listener sees the pod itself; the reply returns through conntrack's reverse NAT.
      expect(await udpExchange(a.ns, '10.96.0.53', 53, 'query')).toBe(a.ip);
      // Unenrolled pods keep their own DNS path: nothing answers 10.96.0.53 for them.
      await expect(udpExchange(c.ns, '10.96.0.53', 53, 'query')).rejects.toThrow(/timeout/);
    } finally {
      dns?.stop();
      await node.destroy();
    }
  });

  it('DNS capture: a pod resolves a Service name through weft\'s DNS proxy (A records from state, unknown names forwarded)', async (ctx) => {
    requireNodeTools(ctx);
    requireKernelFeature(ctx, 'vxlan', kernelHasLinkType('vxlan'));
    const node = await SimulatedNode.create({ dnsCapture: true });
    let runtime: RuntimeHandle | undefined;
    try {
      await node.mustSetup();
      const a = await node.addPod('a', 'mesh');
      runtime = await startRuntime(node, {
        workloads: [{ name: a.name, namespace: a.namespace, ip: a.ip, labels: { app: 'a' } }],
        services: [{ name: 'svc-b', namespace: 'mesh', vip: VIP, port: 80, targetPort: 8080, selector: { app: 'b' } }],
        // Nothing listens here: a forwarded query must come back SERVFAIL, not hang.
        dns: { upstreams: ['127.0.0.1:9'] },
      });
      // The pod's resolver is any address on port 53 (kube-dns' ClusterIP here); capture DNATs it to weft.
      const resolve = async (name: string): Promise<string> => {
        const script = `const r = new (require('node:dns').promises.Resolver)({ timeout: 2000, tries: 1 }); r.setServers(['10.96.0.53']);
          r.resolve4(process.argv[1]).then((a) => process.stdout.write(a.join(',')), (e) => process.stdout.write(e.code));`;
        return (await nsMust(a.ns, process.execPath, ['-e', script, name])).trim();
      };
      expect(await resolve('svc-b.mesh.svc.cluster.local')).toBe(VIP);
      expect(await resolve('svc-b.mesh')).toBe(VIP);
      expect(await resolve('unknown.example')).toBe('ESERVFAIL');
      expect(await runtime.metrics()).toMatch(/weft_dns_queries_total\{[^}]*result="answered"[^}]*\} [1-9]/);
    } finally {
      await runtime?.stop();
      await node.destroy();
    }
  });
});
