/** The pure rule generator: resolved node facts in, the ordered links, sysctls, ipsets, iptables lines, ip rules and routes of reference/ambient-mesh.md §2.3–2.5 out (no side effects). */
import type { DEFAULT_NAMES} from './cni-constants.js';
import { NODE_MARKS, ROUTE_TABLES, RULE_PRIORITIES, RUNTIME_MARKS, RUNTIME_PORTS, TUNNEL, type TunnelDriver } from './cni-constants.js';

export type RedirectNames = { -readonly [K in keyof typeof DEFAULT_NAMES]: string };

export const IPTABLES_TABLES = ['nat', 'mangle', 'filter', 'raw'] as const;
export type IptablesTable = (typeof IPTABLES_TABLES)[number];

export interface LinkPlan {
  name: string;
  driver: TunnelDriver;
  vni: number;
  remote: string;
  port: number;
  address: string;
}
export interface SysctlPlan {
  key: string;
  value: string;
}
export interface IpsetPlan {
  name: string;
  type: 'hash:ip';
}
/** One of our chains and the built-in chain that jumps to it (inserted first, as the reference's `-I`). */
export interface ChainPlan {
  table: IptablesTable;
  chain: string;
  hook: string;
}
export interface IptablesRulePlan {
  table: IptablesTable;
  /** An iptables-restore line, `-A <our chain> ...`. */
  line: string;
}
export interface IpRulePlan {
  priority: number;
  /** What follows `ip rule add priority N`. */
  args: string[];
}
export interface RoutePlan {
  table: number;
  /** What follows `ip route add table N`. */
  args: string[];
}

/** Everything one network namespace gets, in the order it is applied. */
export interface NetnsPlan {
  links: LinkPlan[];
  sysctls: SysctlPlan[];
  ipsets: IpsetPlan[];
  chains: ChainPlan[];
  rules: IptablesRulePlan[];
  ipRules: IpRulePlan[];
  routes: RoutePlan[];
}

/** The facts node setup resolves before planning (detected or configured). */
export interface RedirectInput {
  names: RedirectNames;
  driver: TunnelDriver;
  tunnelPort: number;
  /** The node's address toward pods (kubelet probes come from it; the runtime's tunnels point at it). */
  hostIp: string;
  /** The runtime pod's address ($ZIP) and the node-side veth that reaches it ($ZVETH). */
  runtimeIp: string;
  runtimeVeth: string;
  /** The runtime namespace's interface toward the node (eth0 in a pod). */
  runtimeInterface: string;
  /** Pod DNS (UDP 53) DNAT to the runtime's 15053. */
  dnsCapture: boolean;
}

export function chainName(names: RedirectNames, hook: string): string {
  return `${names.chainPrefix}_${hook}`;
}

const addr = (cidr: string): string => cidr.split('/')[0] ?? cidr;

/** Node namespace: §2.3 chain hooks and rules in append order, §2.4 routing, tunnels and sysctls. */
export function planNode(input: RedirectInput): NetnsPlan {
  const { names, hostIp, runtimeIp: zip, runtimeVeth: zveth, tunnelPort } = input;
  const chain = (hook: string): string => chainName(names, hook);
  const chains: ChainPlan[] = [
    { table: 'nat', chain: chain('PREROUTING'), hook: 'PREROUTING' },
    { table: 'nat', chain: chain('POSTROUTING'), hook: 'POSTROUTING' },
    { table: 'mangle', chain: chain('PREROUTING'), hook: 'PREROUTING' },
    { table: 'mangle', chain: chain('POSTROUTING'), hook: 'POSTROUTING' },
    { table: 'mangle', chain: chain('OUTPUT'), hook: 'OUTPUT' },
    { table: 'mangle', chain: chain('INPUT'), hook: 'INPUT' },
    { table: 'mangle', chain: chain('FORWARD'), hook: 'FORWARD' },
    { table: 'filter', chain: chain('FORWARD'), hook: 'FORWARD' },
  ];
  const mangle = (hook: string, rest: string): IptablesRulePlan => ({ table: 'mangle', line: `-A ${chain(hook)} ${rest}` });
  const nat = (hook: string, rest: string): IptablesRulePlan => ({ table: 'nat', line: `-A ${chain(hook)} ${rest}` });
  const { outbound, skip, connSkip, proxy, proxyReturn } = NODE_MARKS;
  const pods = names.ipset;
  const rules: IptablesRulePlan[] = [
    // 1) traffic arriving from the tunnels: skip (but do not connmark)
    mangle('PREROUTING', `-i ${names.inboundTunnel} -j MARK --set-mark ${skip}`),
    mangle('PREROUTING', `-i ${names.inboundTunnel} -j RETURN`),
    mangle('PREROUTING', `-i ${names.outboundTunnel} -j MARK --set-mark ${skip}`),
    mangle('PREROUTING', `-i ${names.outboundTunnel} -j RETURN`),
    // 2) persist skip / proxy marks into conntrack after routing
    mangle('FORWARD', `-m mark --mark ${connSkip} -j CONNMARK --save-mark --nfmask 0x220 --ctmask 0x220`),
    mangle('INPUT', `-m mark --mark ${connSkip} -j CONNMARK --save-mark --nfmask 0x220 --ctmask 0x220`),
    mangle('FORWARD', `-m mark --mark ${proxy} -j CONNMARK --save-mark --nfmask 0x210 --ctmask 0x210`),
    mangle('INPUT', `-m mark --mark ${proxy} -j CONNMARK --save-mark --nfmask 0x210 --ctmask 0x210`),
    // 3) kubelet health probes from the node: never capture
    mangle('OUTPUT', `-m owner --socket-exists -p tcp -m set --match-set ${pods} dst --source ${hostIp} -j MARK --set-mark 0x220`),
    // 4) outbound-marked packets bypass kube-proxy DNAT (the ClusterIP reaches weft) and the KUBE-SERVICES reject
    nat('PREROUTING', `-m mark --mark ${outbound} -j ACCEPT`),
    nat('POSTROUTING', `-m mark --mark ${outbound} -j ACCEPT`),
    { table: 'filter', line: `-A ${chain('FORWARD')} -m mark --mark ${outbound} -j ACCEPT` },
    // 5) pod DNS -> the runtime's DNS proxy
    ...(input.dnsCapture ? [nat('PREROUTING', `-p udp -m set --match-set ${pods} src --dport 53 -j DNAT --to ${zip}:${RUNTIME_PORTS.dns}`)] : []),
    // 6) main classification
    mangle('PREROUTING', `-p udp -m udp --dport ${tunnelPort} -j RETURN`),
    mangle('PREROUTING', `-m connmark --mark ${connSkip} -j MARK --set-mark ${skip}`),
    mangle('PREROUTING', `-m mark --mark ${skip} -j RETURN`),
    mangle('PREROUTING', `! -i ${zveth} -m connmark --mark ${proxy} -j MARK --set-mark ${proxyReturn}`),
    mangle('PREROUTING', `-m mark --mark ${proxyReturn} -j RETURN`),
    mangle('PREROUTING', `-i ${zveth} ! --source ${zip} -j MARK --set-mark ${proxy}`),
    mangle('PREROUTING', `-m mark --mark ${skip} -j RETURN`),
    mangle('PREROUTING', `-i ${zveth} -j MARK --set-mark ${connSkip}`),
    mangle('PREROUTING', `-p udp -j MARK --set-mark ${connSkip}`),
    mangle('PREROUTING', `-m mark --mark ${skip} -j RETURN`),
    mangle('PREROUTING', `-p tcp -m set --match-set ${pods} src -j MARK --set-mark ${outbound}`),
  ];
  const { inbound: tIn, outbound: tOut, proxy: tProxy } = ROUTE_TABLES;
  const routes: RoutePlan[] = [
    { table: tOut, args: [zip, 'dev', zveth, 'scope', 'link'] },
    { table: tOut, args: ['0.0.0.0/0', 'via', addr(TUNNEL.runtimeOutboundAddress), 'dev', names.outboundTunnel] },
    { table: tProxy, args: [zip, 'dev', zveth, 'scope', 'link'] },
    { table: tProxy, args: ['0.0.0.0/0', 'via', zip, 'dev', zveth, 'onlink'] },
    { table: tIn, args: [zip, 'dev', zveth, 'scope', 'link'] },
  ];
  const ipRules: IpRulePlan[] = [
    { priority: RULE_PRIORITIES.skip, args: ['fwmark', skip, 'goto', String(RULE_PRIORITIES.main)] },
    { priority: RULE_PRIORITIES.outbound, args: ['fwmark', outbound, 'lookup', String(tOut)] },
    { priority: RULE_PRIORITIES.proxyReturn, args: ['fwmark', proxyReturn, 'lookup', String(tProxy)] },
    { priority: RULE_PRIORITIES.inbound, args: ['lookup', String(tIn)] },
  ];
  const links: LinkPlan[] = [
    { name: names.inboundTunnel, driver: input.driver, vni: TUNNEL.inboundVni, remote: zip, port: tunnelPort, address: TUNNEL.nodeInboundAddress },
    { name: names.outboundTunnel, driver: input.driver, vni: TUNNEL.outboundVni, remote: zip, port: tunnelPort, address: TUNNEL.nodeOutboundAddress },
  ];
  const sysctls: SysctlPlan[] = [
    ...['default', 'all'].map((dev) => ({ key: `net.ipv4.conf.${dev}.rp_filter`, value: '0' })),
    { key: `net.ipv4.conf.${zveth}.rp_filter`, value: '0' },
    { key: `net.ipv4.conf.${zveth}.accept_local`, value: '1' },
    ...[names.inboundTunnel, names.outboundTunnel].flatMap((dev) => [
      { key: `net.ipv4.conf.${dev}.rp_filter`, value: '0' },
      { key: `net.ipv4.conf.${dev}.accept_local`, value: '1' },
    ]),
  ];
  return { links, sysctls, ipsets: [{ name: pods, type: 'hash:ip' }], chains, rules, ipRules, routes };
}

/**
 * The runtime's namespace (§2.5). One deliberate difference: the reference flushes the built-in
 * `mangle PREROUTING` and `nat OUTPUT` there; weft appends to its own chain hooked from PREROUTING,
 * so cleanup can remove exactly what it added.
 */
export function planRuntime(input: RedirectInput): NetnsPlan {
  const { names, hostIp, runtimeIp: zip, runtimeInterface: eth, tunnelPort } = input;
  const pre = chainName(names, 'PREROUTING');
  const tproxy = `--tproxy-mark ${RUNTIME_MARKS.tproxy}`;
  const rules: IptablesRulePlan[] = [
    `-p tcp -i ${names.runtimeInboundTunnel} -m tcp --dport ${RUNTIME_PORTS.hbone} -j TPROXY ${tproxy} --on-port ${RUNTIME_PORTS.hbone} --on-ip 127.0.0.1`,
    `-p tcp -i ${names.runtimeOutboundTunnel} -j TPROXY ${tproxy} --on-port ${RUNTIME_PORTS.outbound} --on-ip 127.0.0.1`,
    `-p tcp -i ${names.runtimeInboundTunnel} -j TPROXY ${tproxy} --on-port ${RUNTIME_PORTS.inboundPlaintext} --on-ip 127.0.0.1`,
    `-p tcp -i ${eth} ! --dst ${zip} -j MARK --set-mark ${RUNTIME_MARKS.originalSourceReturn}`,
  ].map((rest) => ({ table: 'mangle', line: `-A ${pre} ${rest}` }));
  const { inbound: tIn, outbound: tOut, proxy: tProxy } = ROUTE_TABLES;
  return {
    links: [
      { name: names.runtimeInboundTunnel, driver: input.driver, vni: TUNNEL.inboundVni, remote: hostIp, port: tunnelPort, address: TUNNEL.runtimeInboundAddress },
      { name: names.runtimeOutboundTunnel, driver: input.driver, vni: TUNNEL.outboundVni, remote: hostIp, port: tunnelPort, address: TUNNEL.runtimeOutboundAddress },
    ],
    sysctls: [names.runtimeInboundTunnel, names.runtimeOutboundTunnel, eth, 'all', 'default'].map((dev) => ({
      key: `net.ipv4.conf.${dev}.rp_filter`,
      value: '0',
    })),
    ipsets: [],
    chains: [{ table: 'mangle', chain: pre, hook: 'PREROUTING' }],
    rules,
    ipRules: [
      { priority: RULE_PRIORITIES.tproxy, args: ['fwmark', RUNTIME_MARKS.tproxy, 'lookup', String(tIn)] },
      { priority: RULE_PRIORITIES.originalSourceReturn, args: ['fwmark', RUNTIME_MARKS.originalSourceReturn, 'lookup', String(tIn)] },
    ],
    routes: [
      { table: tIn, args: ['local', '0.0.0.0/0', 'dev', 'lo'] },
      { table: tOut, args: ['0.0.0.0/0', 'via', addr(TUNNEL.nodeOutboundAddress), 'dev', names.runtimeOutboundTunnel] },
      { table: tProxy, args: ['0.0.0.0/0', 'via', addr(TUNNEL.nodeInboundAddress), 'dev', names.runtimeInboundTunnel] },
      { table: tOut, args: [hostIp, 'dev', eth, 'scope', 'link'] },
      { table: tProxy, args: [hostIp, 'dev', eth, 'scope', 'link'] },
    ],
  };
}

/** What ADD does on the node for one enrolled pod IP (§2.4 AddPodToMesh). */
export interface PodPlan {
  ipsetEntries: { set: string; ip: string; comment: string }[];
  routes: RoutePlan[];
  sysctls: SysctlPlan[];
}

export function planPod(names: RedirectNames, hostIp: string, podIps: string[], comment: string, hostVeth: string | undefined): PodPlan {
  return {
    ipsetEntries: podIps.map((ip) => ({ set: names.ipset, ip, comment })),
    routes: podIps.map((ip) => ({
      table: ROUTE_TABLES.inbound,
      args: [`${ip}/32`, 'via', addr(TUNNEL.runtimeInboundAddress), 'dev', names.inboundTunnel, 'src', hostIp],
    })),
    sysctls: hostVeth === undefined ? [] : [{ key: `net.ipv4.conf.${hostVeth}.rp_filter`, value: '0' }],
  };
}

/** The argument vector of `ip link add` for a tunnel device. */
export function linkAddArgs(link: LinkPlan): string[] {
  return ['link', 'add', link.name, 'type', link.driver, 'id', String(link.vni), 'remote', link.remote, 'dstport', String(link.port)];
}

/** A plan as command lines, one step per line in apply order: what `node setup --dry-run` prints and the golden tests compare. */
export function renderPlan(plan: NetnsPlan): string[] {
  const out: string[] = [];
  for (const link of plan.links) {
    out.push(`ip ${linkAddArgs(link).join(' ')}`, `ip addr add ${link.address} dev ${link.name}`, `ip link set ${link.name} up`);
  }
  for (const s of plan.sysctls) out.push(`sysctl -w ${s.key}=${s.value}`);
  for (const set of plan.ipsets) out.push(`ipset create ${set.name} ${set.type} comment`);
  for (const c of plan.chains) out.push(`iptables -t ${c.table} -N ${c.chain}`, `iptables -t ${c.table} -I ${c.hook} -j ${c.chain}`);
  for (const r of plan.rules) out.push(`iptables -t ${r.table} ${r.line}`);
  for (const r of plan.routes) out.push(`ip route add table ${r.table} ${r.args.join(' ')}`);
  for (const r of plan.ipRules) out.push(`ip rule add priority ${r.priority} ${r.args.join(' ')}`);
  return out;
}

export function renderPodPlan(plan: PodPlan): string[] {
  return [
    ...plan.ipsetEntries.map((e) => `ipset add ${e.set} ${e.ip} comment ${e.comment}`),
    ...plan.routes.map((r) => `ip route add table ${r.table} ${r.args.join(' ')}`),
    ...plan.sysctls.map((s) => `sysctl -w ${s.key}=${s.value}`),
  ];
}
