// Node setup and cleanup applied in a simulated node (its own netns): exact restore, idempotence, crash repair, driver choice errors.
import { describe, expect, it } from 'vitest';
import { kernelHasLinkType, requireCommands, requireKernelFeature, requireRoot } from '../helpers/requirements.js';
import { nsRun } from '../helpers/netns-exec.js';
import { SimulatedNode, snapshotNetns, type SimulatedNodeOptions } from '../helpers/netns-topology.js';

type Ctx = Parameters<typeof requireRoot>[0];

function requireNodeTools(ctx: Ctx): void {
  requireRoot(ctx);
  requireCommands(ctx, 'ip', 'iptables-nft-restore', 'iptables-nft-save', 'ipset', 'nft', 'flock', 'nsenter', 'unshare', '/usr/lib/cni/bridge', '/usr/lib/cni/ptp');
}

async function withNode(fn: (node: SimulatedNode) => Promise<void>, opts: SimulatedNodeOptions = {}): Promise<void> {
  const node = await SimulatedNode.create(opts);
  try {
    await fn(node);
  } finally {
    await node.destroy();
  }
}

const snapshotBoth = async (node: SimulatedNode): Promise<Record<string, string>> => {
  const [n, r] = await Promise.all([snapshotNetns(node.nodeNs), snapshotNetns(node.runtimeNs)]);
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(n)) out[`node.${k}`] = v;
  for (const [k, v] of Object.entries(r)) out[`runtime.${k}`] = v;
  return out;
};

async function isIsolated(node: SimulatedNode, port: string): Promise<boolean> {
  const links = JSON.parse((await nsRun(node.nodeNs, 'ip', ['-d', '-j', 'link', 'show', 'dev', port])).stdout) as { linkinfo: { info_slave_data: { isolated: boolean } } }[];
  return links[0]!.linkinfo.info_slave_data.isolated;
}

/** Objects re-created by a repairing setup get new ifindexes, MACs and hash seeds; everything else must match. */
function structural(snapshot: Record<string, string>): Record<string, string> {
  return Object.fromEntries(
    Object.entries(snapshot).map(([k, v]) => [k, v.replace(/"(ifindex|address|link_index)":("[^"]*"|\d+),/g, '').replace(/initval 0x[0-9a-f]+/g, '')]),
  );
}

describe('weft-cni node setup / cleanup in a simulated node', () => {
  it('cleanup returns iptables-save, ip rule, routes, links, ipsets and sysctls to exactly their state before setup', async (ctx) => {
    requireNodeTools(ctx);
    await withNode(async (node) => {
      // The primary CNI's bridge exists before weft (an unenrolled pod creates it), as on a real node.
      await node.addPod('bystander', 'legacy');
      const before = await snapshotBoth(node);
      await node.mustSetup();
      const enrolled = await node.addPod('a', 'mesh');
      const during = await snapshotBoth(node);
      expect(during['node.iptables']).toContain('-A WEFT_PREROUTING -p tcp -m set --match-set weft-pods-ips src -j MARK --set-xmark 0x100/0x100');
      expect(during['node.ipsets']).toContain(`add weft-pods-ips ${enrolled.ip} comment`);
      expect(during['runtime.iptables']).toContain('--on-port 15001');
      const port = (enrolled.result.interfaces as { name: string; sandbox?: string }[])[1]!.name;
      expect(await isIsolated(node, port)).toBe(true);
      const cleaned = await node.cleanup();
      expect(cleaned.code, cleaned.stderr).toBe(0);
      // cleanup also undid the pod's entries (its bridge port is no longer isolated); the pod itself is the primary CNI's to delete.
      expect(await isIsolated(node, port)).toBe(false);
      await node.delPod(enrolled);
      const after = await snapshotBoth(node);
      for (const key of Object.keys(before)) expect(after[key], key).toBe(before[key]);
    });
  });

  it('setup twice changes nothing the second time', async (ctx) => {
    requireNodeTools(ctx);
    await withNode(async (node) => {
      await node.mustSetup();
      const once = await snapshotBoth(node);
      await node.mustSetup();
      expect(await snapshotBoth(node)).toEqual(once);
    });
  });

  it('a setup killed half-way is repaired by the next setup, and cleanup still restores everything', async (ctx) => {
    requireNodeTools(ctx);
    await withNode(async (node) => {
      const before = await snapshotBoth(node);
      await node.mustSetup();
      const complete = await snapshotBoth(node);
      expect((await node.cleanup()).code).toBe(0);
      // Crash points spread across links, sysctls, ipset, iptables, routes and rules of both namespaces.
      for (const writes of [3, 12, 17, 24]) {
        const killed = await node.setup({ WEFT_CNI_FAULT_AFTER_WRITES: String(writes) });
        expect(killed.code, `setup should have been killed after ${writes} state writes`).not.toBe(0);
        expect(await snapshotBoth(node)).not.toEqual(complete);
        await node.mustSetup();
        expect(structural(await snapshotBoth(node))).toEqual(structural(complete));
        expect((await node.cleanup()).code).toBe(0);
        expect(await snapshotBoth(node)).toEqual(before);
      }
      // A crash followed directly by cleanup (no repairing setup) also leaves nothing behind.
      expect((await node.setup({ WEFT_CNI_FAULT_AFTER_WRITES: '20' })).code).not.toBe(0);
      expect((await node.cleanup()).code).toBe(0);
      expect(await snapshotBoth(node)).toEqual(before);
    });
  });

  it('asking for a tunnel driver the kernel lacks fails with a clear message and changes nothing', async (ctx) => {
    requireNodeTools(ctx);
    const missing = kernelHasLinkType('geneve') ? (kernelHasLinkType('vxlan') ? undefined : 'vxlan') : 'geneve';
    // Only a kernel lacking one driver can show this error end to end (this one lacks geneve).
    requireKernelFeature(ctx, 'a tunnel driver absent from the kernel (both geneve and vxlan are built)', missing !== undefined);
    await withNode(
      async (node) => {
        const before = await snapshotBoth(node);
        const r = await node.setup();
        expect(r.code).toBe(1);
        expect(r.stderr).toContain(`tunnel driver "${missing}" was asked for but this kernel cannot create ${missing} devices`);
        expect(await snapshotBoth(node)).toEqual(before);
      },
      { tunnelDriver: missing as 'geneve' | 'vxlan' },
    );
  });

  it('auto picks geneve where the kernel has it, else vxlan; the tunnel port is the first free one', async (ctx) => {
    requireNodeTools(ctx);
    await withNode(
      async (node) => {
        // Something else already holds the driver's first port in the node namespace.
        const expectVxlan = !kernelHasLinkType('geneve');
        const base = expectVxlan ? 4789 : 6081;
        const holder = await nsRun(node.nodeNs, 'ip', ['link', 'add', 'other0', 'type', expectVxlan ? 'vxlan' : 'geneve', 'id', '7', 'remote', '10.9.9.9', 'dstport', String(base)]);
        expect(holder.code, holder.stderr).toBe(0);
        const r = await node.setup();
        expect(r.code, r.stderr).toBe(0);
        expect(JSON.parse(r.stdout)).toMatchObject({ driver: expectVxlan ? 'vxlan' : 'geneve', tunnelPort: base + 1 });
        const links = (await nsRun(node.nodeNs, 'ip', ['-d', 'link', 'show', 'weftin'])).stdout;
        expect(links).toContain(`dstport ${base + 1}`);
      },
      { tunnelDriver: 'auto' },
    );
  });

  it('doctor reports kernel features and the backend', async (ctx) => {
    requireNodeTools(ctx);
    await withNode(async (node) => {
      const r = await node.weftCni(['node', 'doctor']);
      const report = JSON.parse(r.stdout) as { features: Record<string, boolean>; iptablesBackend: { backend: string }; tunnelDriver: string };
      expect(report.features).toMatchObject({ vxlan: kernelHasLinkType('vxlan'), geneve: kernelHasLinkType('geneve'), tproxy: true, setMatch: true, socketMatch: true });
      expect(report.iptablesBackend.backend).toBe('nft');
      expect(report.tunnelDriver).toBe(kernelHasLinkType('geneve') ? 'geneve' : 'vxlan');
      expect(r.code).toBe(0);
    });
  });

  it('detects the legacy backend from kubelet hint chains, as istio-cni does', async (ctx) => {
    requireNodeTools(ctx);
    requireCommands(ctx, 'iptables-legacy', 'iptables-legacy-save');
    await withNode(async (node) => {
      expect((await nsRun(node.nodeNs, 'iptables-legacy', ['-t', 'mangle', '-N', 'KUBE-IPTABLES-HINT'])).code).toBe(0);
      const report = JSON.parse((await node.weftCni(['node', 'doctor'])).stdout) as { iptablesBackend: { backend: string; reason: string } };
      expect(report.iptablesBackend).toEqual({ backend: 'legacy', reason: 'KUBE-IPTABLES-HINT found by iptables-legacy-save' });
    });
  });

  it('with the legacy backend detected, rules go through iptables-legacy-restore and cleanup restores iptables-legacy-save exactly', async (ctx) => {
    requireNodeTools(ctx);
    requireCommands(ctx, 'iptables-legacy', 'iptables-legacy-save', 'iptables-legacy-restore');
    await withNode(async (node) => {
      expect((await nsRun(node.nodeNs, 'iptables-legacy', ['-t', 'mangle', '-N', 'KUBE-IPTABLES-HINT'])).code).toBe(0);
      // Legacy tables are kernel modules that stay listed once used; an untouched one (built-in chains, ACCEPT, no rules) is dropped
      // from the comparison, which is the one thing cleanup cannot undo on that backend (cni/README.md).
      const legacySave = async (ns: string): Promise<string> =>
        (await nsRun(ns, 'iptables-legacy-save', [])).stdout
          .split('\n')
          .filter((l) => !l.startsWith('#'))
          .map((l) => l.replace(/\[\d+:\d+\]/, '[0:0]'))
          .join('\n')
          .split(/(?=^\*)/m)
          .filter((table) => !/^\*\w+\n(:[A-Z]+ ACCEPT \[0:0\]\n)*COMMIT\n?$/.test(table))
          .join('');
      const before = await legacySave(node.nodeNs);
      const r = await node.setup();
      expect(JSON.parse(r.stdout)).toMatchObject({ backend: 'legacy' });
      expect(await legacySave(node.nodeNs)).toContain('-A WEFT_PREROUTING -p tcp -m set --match-set weft-pods-ips src -j MARK --set-xmark 0x100/0x100');
      expect((await nsRun(node.nodeNs, 'iptables-nft-save', [])).stdout).not.toContain('WEFT');
      expect((await node.cleanup()).code).toBe(0);
      expect(await legacySave(node.nodeNs)).toBe(before);
    });
  });
});
