/** The pure rule generator of in-pod mode: what one pod's own network namespace gets (reference/ambient-mesh.md §2.9, Istio 1.24+ REDIRECT form, weft's chain names); the node namespace gets nothing. */
import type { ChainPlan, IptablesRulePlan, NetnsPlan } from './rule-plan.js';

/** In-pod marks and numbers: 0x539 (1337) is the SO_MARK of weft's own sockets, 0x111 the connmark of its spoofed deliveries. */
export const INPOD = {
  proxyMark: '0x539/0xfff',
  connMark: '0x111/0xfff',
  /** Istio's HOST_PROBE_SNAT_IP: kubelet probes SNAT'd to it on the node pass uncaptured (and its IPv6 value). */
  probeSnatIp: '169.254.7.127',
  probeSnatIp6: 'fd16:9254:7127:1337:ffff:ffff:ffff:ffff',
  table: 100,
  rulePriority: 32764,
  ports: { outbound: 15001, inbound: 15006, hbone: 15008, dns: 15053 },
} as const;

export interface InpodPlanInput {
  chainPrefix: string;
  dnsCapture: boolean;
  /** 6: the same rules for ip6tables, `ip -6 rule` and `ip -6 route` (a dual-stack or IPv6 pod gets both families). */
  family?: 4 | 6;
}

export function planInpodPod(input: InpodPlanInput): NetnsPlan {
  const prert = `${input.chainPrefix}_PRERT`;
  const output = `${input.chainPrefix}_OUTPUT`;
  const v6 = input.family === 6;
  const { proxyMark, connMark, ports } = INPOD;
  const probeSnatIp = v6 ? `${INPOD.probeSnatIp6}/128` : `${INPOD.probeSnatIp}/32`;
  const loopback = v6 ? '::1/128' : '127.0.0.1/32';
  const chains: ChainPlan[] = [
    { table: 'mangle', chain: prert, hook: 'PREROUTING' },
    { table: 'mangle', chain: output, hook: 'OUTPUT' },
    { table: 'nat', chain: prert, hook: 'PREROUTING' },
    { table: 'nat', chain: output, hook: 'OUTPUT' },
    ...(input.dnsCapture
      ? ([
          { table: 'raw', chain: prert, hook: 'PREROUTING' },
          { table: 'raw', chain: output, hook: 'OUTPUT' },
        ] as ChainPlan[])
      : []),
  ];
  const m = (line: string): IptablesRulePlan => ({ table: 'mangle', line });
  const n = (line: string): IptablesRulePlan => ({ table: 'nat', line });
  const r = (line: string): IptablesRulePlan => ({ table: 'raw', line });
  const rules: IptablesRulePlan[] = [
    // weft's spoofed connection to the app enters through lo with weft's mark: remember it on the connection...
    m(`-A ${prert} -m mark --mark ${proxyMark} -j CONNMARK --set-xmark ${connMark}`),
    // ...so the app's replies carry it again and rule 32764 hands them to weft's transparent socket.
    m(`-A ${output} -m connmark --mark ${connMark} -j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff`),
    n(`-A ${prert} -s ${probeSnatIp} -p tcp -m tcp -j ACCEPT`),
    n(`-A ${output} -d ${probeSnatIp} -p tcp -m tcp -j ACCEPT`),
    // Inbound HBONE needs no rule: weft's socket is bound in the pod at *:15008.
    n(`-A ${prert} ! -d ${loopback} -p tcp -m tcp ! --dport ${ports.hbone} -m mark ! --mark ${proxyMark} -j REDIRECT --to-ports ${ports.inbound}`),
    ...(input.dnsCapture
      ? [
          n(`-A ${output} ! -o lo -p udp -m mark ! --mark ${proxyMark} -m udp --dport 53 -j REDIRECT --to-ports ${ports.dns}`),
          n(`-A ${output} ! -d ${loopback} -p tcp -m tcp --dport 53 -m mark ! --mark ${proxyMark} -j REDIRECT --to-ports ${ports.dns}`),
        ]
      : []),
    n(`-A ${output} -p tcp -m mark --mark ${connMark} -j ACCEPT`),
    n(`-A ${output} ! -d ${loopback} -o lo -j ACCEPT`),
    n(`-A ${output} ! -d ${loopback} -p tcp -m mark ! --mark ${proxyMark} -j REDIRECT --to-ports ${ports.outbound}`),
    ...(input.dnsCapture
      ? [
          // weft's own DNS conntrack entries apart from the app's (the same 5-tuple would otherwise be NATed back).
          r(`-A ${output} -p udp -m mark --mark ${proxyMark} -m udp --dport 53 -j CT --zone 1`),
          r(`-A ${prert} -p udp -m mark ! --mark ${proxyMark} -m udp --sport 53 -j CT --zone 1`),
        ]
      : []),
  ];
  return {
    links: [],
    sysctls: [],
    ipsets: [],
    chains,
    rules,
    routes: [{ table: INPOD.table, args: ['local', v6 ? '::/0' : '0.0.0.0/0', 'dev', 'lo'] }],
    ipRules: [{ priority: INPOD.rulePriority, args: ['fwmark', INPOD.connMark, 'lookup', String(INPOD.table)] }],
  };
}
