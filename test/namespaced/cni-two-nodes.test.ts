// Two simulated nodes linked by a veth: pod traffic across nodes leaves through the source node's weft (outbound capture) and enters
// through the destination node's weft (inbound capture via table 100 and the inbound tunnel), in both directions.
import { describe, expect, it } from 'vitest';
import { startServer, tcpExchange, type PeerServer } from '../helpers/netns-peers.js';
import { twoLinkedNodes, type SimulatedNode } from '../helpers/netns-topology.js';
import { startRuntime, type RuntimeHandle } from '../helpers/netns-weft-runtime.js';
import { kernelHasLinkType, requireCommands, requireKernelFeature, requireRoot } from '../helpers/requirements.js';

describe('two simulated nodes', () => {
  it('cross-node pod traffic goes through both nodes’ weft, both ways', async (ctx) => {
    requireRoot(ctx);
    requireCommands(ctx, 'ip', 'iptables-nft-restore', 'ipset', 'nft', 'flock', 'nsenter', 'unshare', '/usr/lib/cni/bridge', '/usr/lib/cni/ptp');
    requireKernelFeature(ctx, 'vxlan', kernelHasLinkType('vxlan'));
    const nodes: SimulatedNode[] = [];
    const runtimes: RuntimeHandle[] = [];
    const servers: PeerServer[] = [];
    try {
      const { n1, n2, a, b } = await twoLinkedNodes(nodes);
      const workloads = [
        { name: 'a', namespace: 'mesh', ip: a.ip },
        { name: 'b', namespace: 'mesh', ip: b.ip },
      ];
      runtimes.push(await startRuntime(n1, { workloads }), await startRuntime(n2, { workloads }));
      const [w1, w2] = runtimes as [RuntimeHandle, RuntimeHandle];
      servers.push(await startServer(a.ns, 'tcp', 8080), await startServer(b.ns, 'tcp', 8080));

      // a (node 1) -> b (node 2): node 1's weft takes it on egress and connects from its own pod IP; node 2 captures that on ingress.
      expect(await tcpExchange(a.ns, b.ip, 8080, 'east')).toBe(n2.runtimeIp);
      expect(await w1.waitFor((l) => l.direction === 'outbound' && l.dst === `${b.ip}:8080`)).toMatchObject({ src: expect.stringMatching(new RegExp(`^${a.ip}:`)) as unknown });
      expect(await w2.waitFor((l) => l.direction === 'inbound' && l.dst === `${b.ip}:8080`)).toMatchObject({ src: expect.stringMatching(new RegExp(`^${n1.runtimeIp}:`)) as unknown });

      // b (node 2) -> a (node 1): the mirror image.
      expect(await tcpExchange(b.ns, a.ip, 8080, 'west')).toBe(n1.runtimeIp);
      expect(await w2.waitFor((l) => l.direction === 'outbound' && l.dst === `${a.ip}:8080`)).toMatchObject({ src: expect.stringMatching(new RegExp(`^${b.ip}:`)) as unknown });
      expect(await w1.waitFor((l) => l.direction === 'inbound' && l.dst === `${a.ip}:8080`)).toMatchObject({ src: expect.stringMatching(new RegExp(`^${n2.runtimeIp}:`)) as unknown });
    } finally {
      for (const s of servers) s.stop();
      for (const r of runtimes) await r.stop();
      for (const n of nodes) await n.destroy();
    }
  });
});
