// In-pod capture of dual-stack pods on a real kernel (root): bridge + host-local hand each pod an IPv4 and an IPv6 address,
// weft-cni adds the same rules to the pod's IPv6 tables (ip6tables, ip -6 rule/route), the runtime listens on :: inside the
// pod, and IPv6 pod-to-pod traffic is captured: the destination sees the client's IPv6 address (on one node, and across two
// nodes over HBONE between the pods' IPv6 addresses), a destination outside the mesh sees the connection leave from the client
// pod's own IPv6 address, DNS sent to an IPv6 nameserver is answered inside the pod, and DEL removes the IPv6 rules with the
// IPv4 ones.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { invokePlugin } from '../helpers/netns-cni-runtime.js';
import { nsRun } from '../helpers/netns-exec.js';
import { askPeerAddress, resolveUdp, startAgent, startInpodRuntime, startPodServers, useInpodMode, type InpodRuntime, type InpodWorkload, type Proc } from '../helpers/netns-inpod.js';
import { allIps, SimulatedNode, type Pod } from '../helpers/netns-topology.js';
import { hasCommand, isRoot } from '../helpers/requirements.js';

const missing = !isRoot() ? 'requires root (CAP_NET_ADMIN, CAP_SYS_ADMIN): run as root, as CI does' : ['iptables-nft-restore', 'ip6tables-nft-restore', 'ip'].find((c) => !hasCommand(c));
if (missing !== undefined) console.log(`inpod-ipv6: skipped: ${missing.startsWith('requires') ? missing : `requires ${missing} (install the Debian packages listed in .ci/run)`}`);

const ip6tables = async (pod: Pod): Promise<string> => (await nsRun(pod.ns, 'ip6tables-nft-save', [])).stdout;
const v6Of = (pod: Pod): string => allIps(pod.result).find((ip) => ip.includes(':')) ?? '';

describe.skipIf(missing !== undefined)('in-pod capture of dual-stack pods (IPv6)', () => {
  const procs: Proc[] = [];
  let node: SimulatedNode;
  let node2: SimulatedNode;
  let caDir: string;
  let runtime: InpodRuntime;
  let runtime2: InpodRuntime;
  let a: Pod;
  let c: Pod;
  let b: Pod;
  let plain: Pod;

  beforeAll(async () => {
    caDir = mkdtempSync(path.join(tmpdir(), 'weft-inpod-v6-ca-'));
    node = await SimulatedNode.create({ index: 1, ipv6: true });
    node2 = await SimulatedNode.create({ index: 2, ipv6: true });
    await node.link(node2);
    const paths = useInpodMode(node, { dnsCapture: true });
    const paths2 = useInpodMode(node2);
    procs.push(await startAgent(node, paths), await startAgent(node2, paths2));
    const workloads: InpodWorkload[] = [
      { name: 'a', ip: '10.61.1.10', ips: ['10.61.1.10', 'fd00:61::10'], node: 1 },
      { name: 'b', ip: '10.61.1.11', ips: ['10.61.1.11', 'fd00:61::11'], node: 1 },
      { name: 'c', ip: '10.62.1.10', ips: ['10.62.1.10', 'fd00:62::10'], node: 2, protocol: 'HBONE' },
    ];
    const dns = { dns: { enabled: true, upstreams: ['127.0.0.1:1'], timeoutMs: 100, attempts: 1 }, services: [{ name: 'reviews', namespace: 'mesh', addresses: ['10.96.0.21', 'fd00:96::21'], ports: [{ port: 9080 }] }] };
    runtime = await startInpodRuntime(node, paths, { caDir, workloads, extra: dns });
    runtime2 = await startInpodRuntime(node2, paths2, { caDir, workloads });
    procs.push(runtime, runtime2);
    a = await node.addPod('a');
    b = await node.addPod('b');
    c = await node2.addPod('c');
    procs.push(await startPodServers(c, { ipv6: true }));
    // Outside the mesh (not enrolled, not a workload): reached by passthrough.
    plain = await node.addPod('plain', 'other');
    for (const pod of [b, plain]) procs.push(await startPodServers(pod, { ipv6: true }));
  }, 120_000);

  afterAll(async () => {
    for (const p of procs.reverse()) await p.kill().catch(() => undefined);
    await node?.destroy();
    await node2?.destroy();
    rmSync(caDir, { recursive: true, force: true });
  }, 60_000);

  it('programs the IPv6 tables of an enrolled dual-stack pod, and the runtime listens on :: there', async () => {
    expect([allIps(a.result), allIps(b.result)]).toEqual([
      ['10.61.1.10', 'fd00:61::10'],
      ['10.61.1.11', 'fd00:61::11'],
    ]);
    const rules = await ip6tables(a);
    expect(rules).toContain('-A WEFT_OUTPUT ! -d ::1/128 -p tcp -m mark ! --mark 0x539/0xfff -j REDIRECT --to-ports 15001');
    expect(rules).toContain('-A WEFT_PRERT -s fd16:9254:7127:1337:ffff:ffff:ffff:ffff/128 -p tcp -m tcp -j ACCEPT');
    expect((await nsRun(a.ns, 'ip', ['-6', 'rule', 'show'])).stdout).toMatch(/32764:\s+from all fwmark 0x111\/0xfff lookup 100/);
    expect((await nsRun(a.ns, 'ip', ['-6', 'route', 'show', 'table', '100'])).stdout).toContain('local default dev lo');
    expect(await ip6tables(plain)).not.toContain('WEFT');
    const listening = (await nsRun(a.ns, 'ss', ['-Htln', 'sport = :15001'])).stdout;
    expect(listening).toMatch(/\[::\]:15001/);
    expect(listening).toMatch(/0\.0\.0\.0:15001/);
    const dump = (await runtime.configDump()) as { inpod: { pods: { name: string; addresses: string[] }[] } };
    expect(dump.inpod.pods.find((p) => p.name === 'a')?.addresses).toEqual(['10.61.1.10', 'fd00:61::10']);
  });

  it('captures IPv6 pod to pod: the destination sees the client pod IPv6 address', async () => {
    expect(await askPeerAddress(a, v6Of(b))).toBe(v6Of(a));
    const out = await runtime.waitFor((l) => l.direction === 'outbound' && l.downstream_local_address === `[${v6Of(b)}]:8080`);
    expect(out.source_address).toMatch(/^\[fd00:61::10\]:/);
    // IPv4 beside it, unchanged.
    expect(await askPeerAddress(a, b.ip)).toBe(a.ip);
  });

  it('crosses nodes over HBONE between the pods IPv6 addresses; the destination sees the client IPv6 address', async () => {
    expect(await askPeerAddress(a, v6Of(c))).toBe(v6Of(a));
    const out = await runtime.waitFor((l) => l.direction === 'outbound' && l.downstream_local_address === `[${v6Of(c)}]:8080`);
    expect(out.connection_security_policy).toBe('mutual_tls');
    const inb = await runtime2.waitFor((l) => l.listener === 'hbone' && l.upstream_host === `[${v6Of(c)}]:8080`);
    expect(inb.source_principal).toBe('spiffe://cluster.local/ns/mesh/sa/a');
  });

  it("answers the pod's DNS sent to an IPv6 nameserver (ip6tables REDIRECT to [::1]:15053 in the pod)", async () => {
    expect((await nsRun(a.ns, 'ss', ['-Hlnu', 'sport = :15053'])).stdout).toMatch(/\[::1\]:15053/);
    expect(await resolveUdp(a, 'reviews', 'fd00:96::10')).toBe('10.96.0.21');
  });

  it('sends IPv6 egress outside the mesh from the client pod own IPv6 address', async () => {
    expect(await askPeerAddress(a, v6Of(plain))).toBe(v6Of(a));
    await runtime.waitFor((l) => l.direction === 'outbound' && l.downstream_local_address === `[${v6Of(plain)}]:8080`);
  });

  it('CHECK verifies the IPv6 chains too, and names a missing one', async () => {
    await node.checkPod(a);
    const [, weft] = node.conflist.plugins as [Record<string, unknown>, Record<string, unknown>];
    const conf = { ...weft, cniVersion: node.conflist.cniVersion, name: node.conflist.name, prevResult: a.result };
    // Someone removes one of weft's IPv6 chains from the pod.
    await nsRun(a.ns, 'ip6tables-nft', ['-t', 'mangle', '-D', 'OUTPUT', '-j', 'WEFT_OUTPUT']);
    await nsRun(a.ns, 'ip6tables-nft', ['-t', 'mangle', '-F', 'WEFT_OUTPUT']);
    await nsRun(a.ns, 'ip6tables-nft', ['-t', 'mangle', '-X', 'WEFT_OUTPUT']);
    const check = await invokePlugin(node.nodeNs, node.cniPath, 'CHECK', a.attachment, conf);
    expect(check.code).not.toBe(0);
    expect(check.stdout).toContain('IPv6 chain mangle/WEFT_OUTPUT');
  });

  it('DEL removes the IPv6 rules, ip -6 rule and route along with the IPv4 ones', async () => {
    const [, weft] = node.conflist.plugins as [Record<string, unknown>, Record<string, unknown>];
    const conf = { ...weft, cniVersion: node.conflist.cniVersion, name: node.conflist.name, prevResult: a.result };
    expect((await invokePlugin(node.nodeNs, node.cniPath, 'DEL', a.attachment, conf)).code).toBe(0);
    expect(await ip6tables(a)).not.toContain('WEFT');
    expect((await nsRun(a.ns, 'iptables-nft-save', [])).stdout).not.toContain('WEFT');
    expect((await nsRun(a.ns, 'ip', ['-6', 'rule', 'show'])).stdout).not.toContain('32764');
    expect((await nsRun(a.ns, 'ip', ['-6', 'route', 'show', 'table', '100'])).stdout.trim()).toBe('');
  });
});
