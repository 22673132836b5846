/** ADD/DEL/CHECK's node work for one attachment: ipset entry, table-100 route and rp_filter per pod IP (reference §2.4 AddPodToMesh), plus bridge-port isolation on a routed bridge; all recorded so DEL removes exactly that. */
import type { CommandRunner } from './command-runner.js';
import { ensureSysctlRecorded, readSysctl, sameRoute, deleteRoute, writeSysctl } from './netns-applier.js';
import { planPod } from './rule-plan.js';
import type { NodeState, PodState, StateStore } from './state-store.js';

export interface PodRequest {
  containerId: string;
  ifname: string;
  ips: string[];
  /** The ipset comment: the pod UID when the runtime passes one, else the container ID (as istio-cni). */
  comment: string;
  /** Host-side interfaces named in prevResult (no sandbox). */
  hostInterfaces: string[];
}

interface JsonLink {
  ifname: string;
  master?: string;
  linkinfo?: { info_kind?: string; info_slave_kind?: string };
}

/** The host end of the pod's veth among prevResult's host-side interfaces, and the bridge it is a port of, if any. */
export async function findHostVeth(runner: CommandRunner, names: string[]): Promise<{ veth?: string; master?: string }> {
  const r = await runner.exec('ip', ['-d', '-j', 'link', 'show']);
  if (r.code !== 0) return {};
  const links = JSON.parse(r.stdout || '[]') as JsonLink[];
  const link = links.find((l) => names.includes(l.ifname) && l.linkinfo?.info_kind === 'veth');
  return link === undefined ? {} : { veth: link.ifname, master: link.master };
}

/**
 * ADD's node work. An enrolled pod gets its ipset entry, route and rp_filter; on a routed bridge every
 * pod's port is isolated, enrolled or not, or an unenrolled pod would still reach enrolled ones at L2,
 * past the inbound capture.
 */
export async function attachPod(runner: CommandRunner, store: StateStore, node: NodeState, req: PodRequest, enrolled: boolean): Promise<PodState | undefined> {
  const { veth, master } = await findHostVeth(runner, req.hostInterfaces);
  const isolate = node.routedBridge !== undefined && veth !== undefined && master === node.routedBridge;
  if (!enrolled && !isolate) return undefined;
  const pod: PodState = store.readPod(req.containerId, req.ifname) ?? {
    version: 1,
    containerId: req.containerId,
    ifname: req.ifname,
    ips: req.ips,
    comment: req.comment,
    ipsetEntries: [],
    routes: [],
    sysctls: [],
  };
  const persist = (): void => store.writePod(pod);
  if (enrolled) {
    const plan = planPod(node.input.names, node.input.hostIp, req.ips, req.comment, veth);
    for (const e of plan.ipsetEntries) {
      if (!pod.ipsetEntries.some((x) => x.ip === e.ip && x.set === e.set)) pod.ipsetEntries.push({ set: e.set, ip: e.ip });
    }
    for (const r of plan.routes) if (!pod.routes.some((x) => sameRoute(x, r))) pod.routes.push(r);
    persist();
    for (const e of plan.ipsetEntries) await runner.run('ipset', ['add', e.set, e.ip, 'comment', e.comment, '-exist']);
    for (const r of plan.routes) await runner.run('ip', ['route', 'replace', 'table', String(r.table), ...r.args]);
    for (const s of plan.sysctls) await ensureSysctlRecorded(runner, pod.sysctls, s, persist);
  }
  if (isolate && node.routedBridge !== undefined && veth !== undefined) {
    await routeBridge(runner, store, node, node.routedBridge);
    pod.isolatedPort = veth;
    persist();
    await isolatePort(runner, veth, true);
  }
  return pod;
}

export async function isolatePort(runner: CommandRunner, port: string, on: boolean): Promise<void> {
  await runner.run('ip', ['link', 'set', 'dev', port, 'type', 'bridge_slave', 'isolated', on ? 'on' : 'off']);
}

/** Ports of `bridge` that exist now (pods wired before node setup). */
export async function bridgePorts(runner: CommandRunner, bridge: string): Promise<string[]> {
  const r = await runner.exec('ip', ['-j', 'link', 'show', 'master', bridge]);
  if (r.code !== 0) return [];
  return (JSON.parse(r.stdout || '[]') as JsonLink[]).map((l) => l.ifname);
}

/** Bridge-wide half of routedBridge, done once and recorded in the node state: the bridge answers ARP for its isolated ports and sends no ICMP redirects (which would point pods back at each other). */
export async function routeBridge(runner: CommandRunner, store: StateStore, node: NodeState, bridge: string): Promise<void> {
  const persist = (): void => store.writeNode(node);
  const settings = [
    [`net.ipv4.conf.${bridge}.proxy_arp`, '1'],
    [`net.ipv4.conf.${bridge}.proxy_arp_pvlan`, '1'],
    [`net.ipv4.conf.${bridge}.send_redirects`, '0'],
    ['net.ipv4.conf.all.send_redirects', '0'],
  ] as const;
  // Set once per node (the first pod on the bridge); later ADDs skip it.
  if (settings.every(([key]) => node.node.sysctls.some((s) => s.key === key))) return;
  for (const [key, value] of settings) await ensureSysctlRecorded(runner, node.node.sysctls, { key, value }, persist);
}

/** Removes what the pod record lists; entries already gone are fine (DEL may run more than once). */
export async function undoPod(runner: CommandRunner, pod: PodState): Promise<void> {
  if (pod.isolatedPort !== undefined) await runner.exec('ip', ['link', 'set', 'dev', pod.isolatedPort, 'type', 'bridge_slave', 'isolated', 'off']);
  for (const s of [...pod.sysctls].reverse()) {
    if ((await readSysctl(runner, s.key)) !== undefined) await writeSysctl(runner, s.key, s.previous);
  }
  for (const r of pod.routes) await deleteRoute(runner, r);
  for (const e of pod.ipsetEntries) await runner.exec('ipset', ['del', e.set, e.ip, '-exist']);
}

/** CHECK: every recorded entry still present; returns what is missing. */
export async function checkPod(runner: CommandRunner, pod: PodState): Promise<string[]> {
  const missing: string[] = [];
  for (const e of pod.ipsetEntries) {
    if ((await runner.exec('ipset', ['test', e.set, e.ip])).code !== 0) missing.push(`ipset ${e.set} lacks ${e.ip}`);
  }
  for (const r of pod.routes) {
    const out = await runner.exec('ip', ['route', 'show', 'table', String(r.table), r.args[0] ?? '']);
    if (out.code !== 0 || out.stdout.trim() === '') missing.push(`route table ${r.table} ${r.args.join(' ')}`);
  }
  return missing;
}
