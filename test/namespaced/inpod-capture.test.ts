// In-pod capture end to end on a real kernel (root): weft-cni chained after bridge + host-local with `mode: inpod`, the node agent and
// the real runtime; pod-to-pod traffic captured inside the pods, HBONE between two nodes, an L7 plugin attached by annotation, the
// node namespace untouched, runtime restarts with replay, DEL and a crash mid-ADD restoring the pod's namespace, 20 parallel ADDs.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { conflistAdd, conflistDel, invokePlugin } from '../helpers/netns-cni-runtime.js';
import { createNetns, deleteNetns, nsMust, uniqueName } from '../helpers/netns-exec.js';
import { askPeerAddress, httpGet, startAgent, startInpodRuntime, startPodServers, useInpodMode, type InpodPaths, type InpodRuntime, type Proc } from '../helpers/netns-inpod.js';
import { SimulatedNode, snapshotNetns, type Pod } from '../helpers/netns-topology.js';
import { hasCommand, isRoot } from '../helpers/requirements.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const missing = !isRoot() ? 'requires root (CAP_NET_ADMIN, CAP_SYS_ADMIN): run as root, as CI does' : ['iptables-nft-restore', 'ip'].find((c) => !hasCommand(c));
if (missing !== undefined) console.log(`inpod-capture: skipped: ${missing.startsWith('requires') ? missing : `requires ${missing} (install the Debian packages listed in .ci/run)`}`);

const plugin = { name: 'header-rewrite', url: `file://${path.join(repoRoot, 'plugins/header-rewrite/build/release.wasm')}`, phase: 'STATS', failStrategy: 'FAIL_OPEN' };
/** b refuses pod a's identity on port 8082 only. */
const policies = [{ name: 'no-a-on-8082', namespace: 'mesh', action: 'DENY', selector: { matchLabels: { app: 'b' } }, rules: [{ from: [{ source: { principals: ['cluster.local/ns/mesh/sa/a'] } }], to: [{ operation: { ports: [8082] } }] }] }];
const annotations = { 'weft.dev/plugins': 'header-rewrite', 'weft.dev/plugin-config.header-rewrite': JSON.stringify({ request: { set: [{ name: 'x-mesh', value: 'weft-inpod' }] } }) };
const nodeView = async (ns: string): Promise<Record<string, string>> => {
  const s = await snapshotNetns(ns);
  return { iptables: s.iptables ?? '', rules: s.rules ?? '', routes4: s.routes4 ?? '', ipsets: s.ipsets ?? '', nft: s.nft ?? '' };
};

describe.skipIf(missing !== undefined)('in-pod capture (weft-cni mode inpod, ZDS, listeners inside pods)', () => {
  const nodes: SimulatedNode[] = [];
  const procs: Proc[] = [];
  let n1: SimulatedNode;
  let n2: SimulatedNode;
  let p1: InpodPaths;
  let p2: InpodPaths;
  let rt1: InpodRuntime;
  let rt2: InpodRuntime;
  let caDir: string;
  let a: Pod;
  let b: Pod;
  let c: Pod;
  let before: Record<string, string>;
  const workloads = (): Parameters<typeof startInpodRuntime>[2]['workloads'] => [
    { name: 'a', ip: '10.61.1.11', node: 1, annotations },
    { name: 'b', ip: '10.61.1.12', node: 1 },
    { name: 'c', ip: '10.62.1.10', node: 2, protocol: 'HBONE' },
  ];

  beforeAll(async () => {
    caDir = mkdtempSync(path.join(tmpdir(), 'weft-inpod-ca-'));
    n1 = await SimulatedNode.create({ index: 1 });
    nodes.push(n1);
    n2 = await SimulatedNode.create({ index: 2 });
    nodes.push(n2);
    await n1.link(n2);
    p1 = useInpodMode(n1);
    p2 = useInpodMode(n2);
    // An unenrolled pod first, so the bridge and its route exist before the "before" picture of the node namespace.
    await n1.addPod('plain', 'other');
    before = await nodeView(n1.nodeNs);
    procs.push(await startAgent(n1, p1), await startAgent(n2, p2));
    rt1 = await startInpodRuntime(n1, p1, { workloads: workloads(), caDir, plugins: [plugin], policies });
    rt2 = await startInpodRuntime(n2, p2, { workloads: workloads(), caDir, plugins: [plugin], policies });
    procs.push(rt1, rt2);
    a = await n1.addPod('a');
    b = await n1.addPod('b');
    c = await n2.addPod('c');
    expect([a.ip, b.ip, c.ip]).toEqual(['10.61.1.11', '10.61.1.12', '10.62.1.10']);
    for (const pod of [a, b, c]) procs.push(await startPodServers(pod));
  }, 120_000);

  afterAll(async () => {
    for (const p of procs.reverse()) await p.kill().catch(() => undefined);
    for (const n of nodes) await n.destroy();
    rmSync(caDir, { recursive: true, force: true });
  }, 60_000);

  it('captures pod to pod on one node: the destination sees the real client address, delivered straight into its pod', async () => {
    expect(await askPeerAddress(a, b.ip)).toBe(a.ip);
    const out = await rt1.waitFor((l) => l.direction === 'outbound' && l.downstream_local_address === `${b.ip}:8080`);
    expect(out.source_address).toMatch(new RegExp(`^${a.ip}:`));
    // Same-node fast path: no second trip through b's 15006.
    expect(rt1.lines().filter((l) => l.direction === 'inbound' && l.downstream_local_address === `${b.ip}:8080`)).toEqual([]);
  });

  it("applies the destination's inbound policy on the same-node fast path, with the client pod's identity", async () => {
    expect(await askPeerAddress(a, b.ip, 8082)).toMatch(/^error|^$/);
    const denied = await rt1.waitFor((l) => l.downstream_local_address === `${b.ip}:8082`);
    expect(denied.response_flags).toBe('DENY');
    expect(await askPeerAddress(c, b.ip, 8082)).toBe(c.ip);
  });

  it("refuses a pod's outbound connection from an address it was not enrolled with (no borrowed identity)", async () => {
    await nsMust(a.ns, 'ip', ['addr', 'add', '10.61.1.200/32', 'dev', 'eth0']);
    try {
      expect(await askPeerAddress(a, b.ip, 8080, '10.61.1.200')).toMatch(/^error|^$/);
      expect(await askPeerAddress(a, b.ip)).toBe(a.ip);
    } finally {
      await nsMust(a.ns, 'ip', ['addr', 'del', '10.61.1.200/32', 'dev', 'eth0']);
    }
  });

  it('crosses nodes over HBONE from the client pod to the destination pod, which sees the client address', async () => {
    expect(await askPeerAddress(a, c.ip)).toBe(a.ip);
    const out = await rt1.waitFor((l) => l.direction === 'outbound' && l.downstream_local_address === `${c.ip}:8080`);
    expect(out.connection_security_policy).toBe('mutual_tls');
    const inb = await rt2.waitFor((l) => l.listener === 'hbone' && l.upstream_host === `${c.ip}:8080`);
    expect(inb.source_principal).toBe('spiffe://cluster.local/ns/mesh/sa/a');
  });

  it('runs the L7 plugin attached to the destination by annotation', async () => {
    expect(JSON.parse(await httpGet(b, `http://${a.ip}:8081/`))).toEqual({ xMesh: 'weft-inpod' });
  });

  it('adds no iptables rule, ip rule or route to the node namespace', async () => {
    expect(await nodeView(n1.nodeNs)).toEqual(before);
  });

  it('node doctor reports both capture modes, and node setup in in-pod mode adds nothing', async () => {
    const doctor = await n1.weftCni(['node', 'doctor', '--config', p1.agentConfig]);
    const report = JSON.parse(doctor.stdout) as { mode: string; modes: Record<string, { usable: boolean; problems: string[] }> };
    expect(report.mode).toBe('inpod');
    expect(report.modes.inpod).toEqual({ usable: true, problems: [] });
    expect(Object.keys(report.modes).sort()).toEqual(['inpod', 'tunnel']);
    expect(doctor.code).toBe(0);
    const setup = await n1.weftCni(['node', 'setup', '--config', p1.agentConfig]);
    expect(JSON.parse(setup.stdout)).toEqual({ phase: 'ready', mode: 'inpod', nodeRules: [] });
    expect(await nodeView(n1.nodeNs)).toEqual(before);
  });

  it('lists the captured pods in /config_dump', async () => {
    const dump = (await rt1.configDump()) as { inpod?: { agent: { state: string }; pods: { name: string; addresses: string[]; ports: number[] }[] } };
    expect(dump.inpod?.agent.state).toBe('synced');
    const pods = (dump.inpod?.pods ?? []).map((p) => ({ name: p.name, addresses: p.addresses, ports: p.ports }));
    expect(pods).toEqual(expect.arrayContaining([{ name: 'a', addresses: [a.ip], ports: [15001, 15006, 15008] }, { name: 'b', addresses: [b.ip], ports: [15001, 15006, 15008] }]));
  });

  it('survives a runtime crash: a pod added meanwhile waits, and after the replay every pod is captured again', async () => {
    await rt1.kill();
    // Captured but nobody listening: the connection fails; it never reaches b directly.
    expect(await askPeerAddress(a, b.ip)).toMatch(/^error/);
    let added: Pod | undefined;
    const pending = n1.addPod('d').then((p) => (added = p));
    await new Promise((r) => setTimeout(r, 1500));
    expect(added).toBeUndefined();
    rt1 = await startInpodRuntime(n1, p1, { workloads: [...workloads(), { name: 'd', ip: '10.61.1.13', node: 1 }], caDir, plugins: [plugin], policies });
    procs.push(rt1);
    const d = await pending;
    expect(d.ip).toBe('10.61.1.13');
    expect(await askPeerAddress(a, b.ip)).toBe(a.ip);
    expect(await askPeerAddress(d, b.ip)).toBe(d.ip);
    expect(await askPeerAddress(a, c.ip)).toBe(a.ip);
    await n1.delPod(d);
  }, 60_000);

  it('DEL, and DEL after a crash in the middle of ADD, leave the pod namespace as the primary CNI left it', async () => {
    const ns = uniqueName('p1');
    const nsPath = await createNetns(ns);
    n1.adopt(ns);
    const attachment = { containerId: `${ns}-e`, netnsPath: nsPath, ifname: 'eth0', args: { IgnoreUnknown: '1', K8S_POD_NAMESPACE: 'mesh', K8S_POD_NAME: 'e', K8S_POD_UID: 'uid-e' } };
    const [bridge, weft] = n1.conflist.plugins as [Record<string, unknown>, Record<string, unknown>];
    const conf = (p: Record<string, unknown>, prev?: unknown): Record<string, unknown> => ({ ...p, cniVersion: n1.conflist.cniVersion, name: n1.conflist.name, ...(prev === undefined ? {} : { prevResult: prev }) });
    const r = await invokePlugin(n1.nodeNs, n1.cniPath, 'ADD', attachment, conf(bridge));
    const prev = JSON.parse(r.stdout) as unknown;
    const wired = await snapshotNetns(ns);
    expect((await invokePlugin(n1.nodeNs, n1.cniPath, 'ADD', attachment, conf(weft, prev))).code).toBe(0);
    expect((await snapshotNetns(ns)).iptables).toContain('REDIRECT --to-ports 15001');
    expect((await invokePlugin(n1.nodeNs, n1.cniPath, 'DEL', attachment, conf(weft, prev))).code).toBe(0);
    expect(await snapshotNetns(ns)).toEqual(wired);
    // A crash in the middle of ADD (SIGKILL after the Nth record write: chains recorded, installed, route, rule), then the runtime's DEL.
    for (const writes of [2, 3, 4]) {
      const crashed = await invokePlugin(n1.nodeNs, n1.cniPath, 'ADD', attachment, conf(weft, prev), { WEFT_CNI_FAULT_AFTER_WRITES: String(writes) });
      expect(crashed.code, `killed after write ${writes}`).not.toBe(0);
      expect((await invokePlugin(n1.nodeNs, n1.cniPath, 'DEL', attachment, conf(weft, prev))).code).toBe(0);
      expect(await snapshotNetns(ns), `after a crash at write ${writes} and DEL`).toEqual(wired);
    }
    await invokePlugin(n1.nodeNs, n1.cniPath, 'DEL', attachment, conf(bridge, prev));
    await deleteNetns(ns);
  }, 60_000);

  it('twenty ADDs in parallel each end captured, and DEL of all of them drops their proxies', async () => {
    const created: string[] = [];
    const added = await Promise.all(
      Array.from({ length: 20 }, async (_, i) => {
        const ns = uniqueName('q');
        created.push(ns);
        const nsPath = await createNetns(ns);
        n1.adopt(ns);
        const attachment = { containerId: `${ns}-q`, netnsPath: nsPath, ifname: 'eth0', args: { IgnoreUnknown: '1', K8S_POD_NAMESPACE: 'mesh', K8S_POD_NAME: `q${i}`, K8S_POD_UID: `uid-q${i}` } };
        return { attachment, result: await conflistAdd(n1.nodeNs, n1.cniPath, n1.conflist, attachment) };
      }),
    );
    const dump = (await rt1.configDump()) as { inpod: { pods: { name: string }[] } };
    expect(dump.inpod.pods.filter((p) => p.name.startsWith('q'))).toHaveLength(20);
    await Promise.all(added.map((x) => conflistDel(n1.nodeNs, n1.cniPath, n1.conflist, x.attachment, x.result)));
    const after = (await rt1.configDump()) as { inpod: { pods: { name: string }[] } };
    expect(after.inpod.pods.filter((p) => p.name.startsWith('q'))).toHaveLength(0);
  }, 120_000);
});
