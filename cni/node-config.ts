/** The node setup file (`weft-cni node setup --config`), decoded with zod into valid-or-problems; only node commands load it, so the per-pod plugin path stays small. */
import { isIP } from 'node:net';
import { z } from 'zod';
import { DEFAULT_NAMES } from './cni-constants.js';
import { CAPTURE_MODES, DEFAULT_AGENT_SOCKET, DEFAULT_STATE_DIR } from './cni-config.js';

const ip = z.string().refine((s) => isIP(s) === 4, { message: 'expected an IPv4 address' });
/** Linux interface names: 1–15 bytes, no '/', whitespace or ':'. */
const ifname = z.string().regex(/^[^\s/:]{1,15}$/, 'expected an interface name (1-15 characters, no spaces, "/" or ":")');
const chainPrefix = z.string().regex(/^[A-Za-z][A-Za-z0-9_-]{0,18}$/, 'expected a chain prefix of letters, digits, "_" or "-" (at most 19)');

export const namesSchema = z.strictObject({
  ipset: z.string().regex(/^[A-Za-z0-9_.-]{1,31}$/).default(DEFAULT_NAMES.ipset),
  inboundTunnel: ifname.default(DEFAULT_NAMES.inboundTunnel),
  outboundTunnel: ifname.default(DEFAULT_NAMES.outboundTunnel),
  runtimeInboundTunnel: ifname.default(DEFAULT_NAMES.runtimeInboundTunnel),
  runtimeOutboundTunnel: ifname.default(DEFAULT_NAMES.runtimeOutboundTunnel),
  chainPrefix: chainPrefix.default(DEFAULT_NAMES.chainPrefix),
});

export const nodeConfigSchema = z
  .strictObject({
  /** `tunnel` (Geneve/VXLAN node rules, the default) or `inpod` (rules inside each pod; `weft-cni agent` runs, node setup has nothing to do). */
  mode: z.enum(CAPTURE_MODES).default('tunnel'),
  /** inpod: the ZDS socket the runtime connects to (weft.yaml `inpod.socket`). */
  zdsSocket: z.string().min(1).default('/var/run/weft/ztunnel.sock'),
  /** inpod: where weft-cni's plugin events reach the agent (the conflist's `agentSocket`). */
  agentSocket: z.string().min(1).default(DEFAULT_AGENT_SOCKET),
  /** Where the record of what was applied lives; tmpfs, like the kernel state it describes. */
  stateDir: z.string().min(1).default(DEFAULT_STATE_DIR),
  tunnelDriver: z.enum(['geneve', 'vxlan', 'auto']).default('auto'),
  /** Fixed tunnel UDP port; by default the first free one from 6081 (geneve) or 4789 (vxlan). */
  tunnelPort: z.number().int().min(1).max(65535).optional(),
  iptablesBackend: z.enum(['auto', 'nft', 'legacy']).default('auto'),
  /** The runtime pod's network namespace (a path such as /var/run/netns/weft or /proc/PID/ns/net). */
  runtimeNetns: z.string().default(''),
  /**
   * The node's network namespace when setup runs elsewhere: the DaemonSet runs it inside the runtime pod
   * (hostPID) with nodeNetns /proc/1/ns/net and runtimeNetns /proc/self/ns/net. Default: where weft-cni runs.
   */
  nodeNetns: z.string().min(1).optional(),
  /** The runtime pod's IP ($ZIP); the node-side veth and the node's own address toward it are detected from the route to it unless given. */
  runtimeIp: z.union([ip, z.literal('')]).default(''),
  runtimeVeth: ifname.optional(),
  hostIp: ip.optional(),
  runtimeInterface: ifname.default('eth0'),
  dnsCapture: z.boolean().default(false),
  /**
   * The primary CNI's bridge, when pods share one: same-node pod traffic is then switched at L2 and
   * never reaches the node's rules, so ADD isolates each pod's bridge port and the bridge answers
   * ARP for its pods (proxy_arp_pvlan), making that traffic routed through the node.
   */
  routedBridge: ifname.optional(),
  names: namesSchema.default(namesSchema.parse({})),
  lockTimeoutMs: z.number().int().positive().default(60_000),
  })
  .superRefine((c, ctx) => {
    if (c.mode !== 'tunnel') return;
    if (c.runtimeNetns === '') ctx.addIssue({ code: 'custom', path: ['runtimeNetns'], message: 'required in tunnel mode' });
    if (c.runtimeIp === '') ctx.addIssue({ code: 'custom', path: ['runtimeIp'], message: 'required in tunnel mode' });
  });
export type NodeConfig = z.infer<typeof nodeConfigSchema>;

export type Decoded<T> = { ok: true; value: T } | { ok: false; problems: string[] };

export function decode<T>(schema: z.ZodType<T>, value: unknown): Decoded<T> {
  const r = schema.safeParse(value);
  if (r.success) return { ok: true, value: r.data };
  return { ok: false, problems: r.error.issues.map((i) => `${i.path.length > 0 ? i.path.join('.') : '(root)'}: ${i.message}`) };
}
