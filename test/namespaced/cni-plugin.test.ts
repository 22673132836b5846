// weft-cni as a chained plugin after the real bridge + host-local in a simulated node: ADD/DEL/CHECK/STATUS/GC, idempotence, 20 parallel ADDs,
// and bad input rejected with spec error codes and nothing applied.
import { describe, expect, it } from 'vitest';
import { invokePlugin, type Attachment } from '../helpers/netns-cni-runtime.js';
import { nsRun } from '../helpers/netns-exec.js';
import { SimulatedNode, snapshotNetns, type Pod } from '../helpers/netns-topology.js';
import { requireCommands, requireRoot } from '../helpers/requirements.js';

type Ctx = Parameters<typeof requireRoot>[0];

function requireNodeTools(ctx: Ctx): void {
  requireRoot(ctx);
  requireCommands(ctx, 'ip', 'iptables-nft-restore', 'ipset', 'nft', 'flock', 'nsenter', 'unshare', '/usr/lib/cni/bridge', '/usr/lib/cni/ptp');
}

async function withReadyNode(fn: (node: SimulatedNode) => Promise<void>): Promise<void> {
  const node = await SimulatedNode.create();
  try {
    await node.mustSetup();
    await fn(node);
  } finally {
    await node.destroy();
  }
}

const weftConf = (node: SimulatedNode, prevResult: unknown): Record<string, unknown> => ({
  ...node.conflist.plugins[1],
  cniVersion: node.conflist.cniVersion,
  name: node.conflist.name,
  ...(prevResult === undefined ? {} : { prevResult }),
});

async function podEntries(node: SimulatedNode): Promise<{ ipset: string[]; routes: string[] }> {
  const ipset = (await nsRun(node.nodeNs, 'ipset', ['list', 'weft-pods-ips'])).stdout
    .split('Members:\n')[1]!
    .split('\n')
    .filter((l) => l.trim() !== '');
  const routes = (await nsRun(node.nodeNs, 'ip', ['route', 'show', 'table', '100'])).stdout.split('\n').filter((l) => l.includes('dev weftin'));
  return { ipset, routes };
}

describe('weft-cni chained after bridge + host-local', () => {
  it('ADD enrolls (ipset, table-100 route, rp_filter), passes prevResult through, CHECK passes, DEL removes exactly that', async (ctx) => {
    requireNodeTools(ctx);
    await withReadyNode(async (node) => {
      const pod = await node.addPod('a', 'mesh');
      expect(pod.result.interfaces).toHaveLength(3);
      expect(pod.result.cniVersion).toBe('1.0.0');
      const { ipset, routes } = await podEntries(node);
      expect(ipset).toEqual([`${pod.ip} comment "uid-1-1"`]);
      expect(routes).toEqual([`${pod.ip} via 192.168.126.2 dev weftin src ${node.hostIp} `]);
      const veth = (pod.result.interfaces as { name: string }[])[1]!.name;
      expect((await nsRun(node.nodeNs, 'sysctl', ['-n', `net.ipv4.conf.${veth}.rp_filter`])).stdout.trim()).toBe('0');
      await node.checkPod(pod);

      // CHECK notices a missing entry and says which.
      await nsRun(node.nodeNs, 'ip', ['route', 'del', 'table', '100', `${pod.ip}/32`]);
      const check = await invokePlugin(node.nodeNs, node.cniPath, 'CHECK', pod.attachment, weftConf(node, pod.result));
      expect(check.code).not.toBe(0);
      expect(JSON.parse(check.stdout)).toMatchObject({ code: 5, details: expect.stringContaining(`route table 100 ${pod.ip}/32`) as unknown });

      await node.delPod(pod);
      expect(await podEntries(node)).toEqual({ ipset: [], routes: [] });
      // DEL again (the runtime may repeat it) succeeds.
      const again = await invokePlugin(node.nodeNs, node.cniPath, 'DEL', pod.attachment, weftConf(node, pod.result));
      expect(again.code, again.stdout).toBe(0);
    });
  });

  it('a pod outside the enrolled namespaces is passed through untouched', async (ctx) => {
    requireNodeTools(ctx);
    await withReadyNode(async (node) => {
      await node.addPod('c', 'legacy');
      expect(await podEntries(node)).toEqual({ ipset: [], routes: [] });
    });
  });

  it('ADD twice for the same attachment is idempotent', async (ctx) => {
    requireNodeTools(ctx);
    await withReadyNode(async (node) => {
      const pod = await node.addPod('a', 'mesh');
      const first = await snapshotNetns(node.nodeNs);
      const r = await invokePlugin(node.nodeNs, node.cniPath, 'ADD', pod.attachment, weftConf(node, pod.result));
      expect(r.code, r.stdout).toBe(0);
      expect(JSON.parse(r.stdout)).toEqual(pod.result);
      expect(await snapshotNetns(node.nodeNs)).toEqual(first);
    });
  });

  it('20 parallel ADDs are serialized by the lock and all land exactly once; 20 parallel DELs remove them all', async (ctx) => {
    requireNodeTools(ctx);
    await withReadyNode(async (node) => {
      await node.addPod('first', 'legacy'); // the bridge plugin creates its bridge once, before the burst
      const pods = await Promise.all(Array.from({ length: 20 }, (_, i) => node.addPod(`p${i}`, 'mesh')));
      const { ipset, routes } = await podEntries(node);
      expect(ipset).toHaveLength(20);
      expect(routes).toHaveLength(20);
      for (const pod of pods) {
        expect(ipset.filter((l) => l.startsWith(`${pod.ip} `))).toHaveLength(1);
        expect(routes.filter((l) => l.startsWith(`${pod.ip} via`))).toHaveLength(1);
      }
      await Promise.all(pods.map((p: Pod) => node.delPod(p)));
      expect(await podEntries(node)).toEqual({ ipset: [], routes: [] });
    });
  });

  it('bad input gets the spec error code and leaves the node exactly as it was', async (ctx) => {
    requireNodeTools(ctx);
    await withReadyNode(async (node) => {
      const pod = await node.addPod('a', 'legacy');
      const before = await snapshotNetns(node.nodeNs);
      const enrolled: Attachment = { ...pod.attachment, containerId: 'bad-input', args: { ...pod.attachment.args, K8S_POD_NAMESPACE: 'mesh' } };
      const raw = async (stdin: string, a: Attachment = enrolled): Promise<{ code: number; msg: string }> => {
        const r = await nsRun(node.nodeNs, `${node.cniPath[1]}/weft-cni`, [], {
          input: stdin,
          env: { PATH: process.env.PATH, CNI_COMMAND: 'ADD', CNI_CONTAINERID: a.containerId, CNI_NETNS: a.netnsPath, CNI_IFNAME: 'eth0', CNI_ARGS: 'K8S_POD_NAMESPACE=mesh;K8S_POD_NAME=a', CNI_PATH: node.cniPath.join(':') },
        });
        expect(r.code).not.toBe(0);
        return JSON.parse(r.stdout) as { code: number; msg: string };
      };
      expect((await raw('{"cniVersion":"1.0.0","name":')).code).toBe(6);
      expect((await raw(JSON.stringify(weftConf(node, undefined)))).code).toBe(7);
      expect((await raw(JSON.stringify({ ...weftConf(node, pod.result), cniVersion: '2.0.0' }))).code).toBe(1);
      expect((await raw(JSON.stringify(weftConf(node, pod.result)), { ...enrolled, netnsPath: '/var/run/netns/weft-test-absent' })).code).toBe(3);
      expect(await snapshotNetns(node.nodeNs)).toEqual(before);
    });
  });

  it('STATUS reports ready after setup; GC removes attachments the runtime no longer lists', async (ctx) => {
    requireNodeTools(ctx);
    await withReadyNode(async (node) => {
      const a = await node.addPod('a', 'mesh');
      const b = await node.addPod('b', 'mesh');
      const status = await invokePlugin(node.nodeNs, node.cniPath, 'STATUS', a.attachment, weftConf(node, undefined));
      expect(status.code, status.stdout).toBe(0);
      const gc = await invokePlugin(node.nodeNs, node.cniPath, 'GC', a.attachment, {
        ...weftConf(node, undefined),
        cniVersion: '1.1.0',
        'cni.dev/valid-attachments': [{ containerID: a.attachment.containerId, ifname: 'eth0' }],
      });
      expect(gc.code, gc.stdout).toBe(0);
      const { ipset } = await podEntries(node);
      expect(ipset.map((l) => l.split(' ')[0])).toEqual([a.ip]);
      expect(ipset.some((l) => l.startsWith(b.ip))).toBe(false);
    });
  });
});
