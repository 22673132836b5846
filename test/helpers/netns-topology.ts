// A simulated Kubernetes node in network namespaces: the node netns, the weft runtime pod wired by the real ptp + host-local plugins, and app
// pods wired by the real bridge + host-local plugins with weft-cni chained after them; two nodes can be linked. Everything lives in namespaces
// this helper creates, so the host's own iptables, routes and links are never touched.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { conflistAdd, conflistCheck, conflistDel, installWeftCni, SYSTEM_CNI_DIR, type Attachment, type Conflist } from './netns-cni-runtime.js';
import { createNetns, deleteNetns, must, nsMust, nsRun, uniqueName, type RunResult } from './netns-exec.js';

export interface Pod {
  name: string;
  namespace: string;
  ns: string;
  nsPath: string;
  ip: string;
  attachment: Attachment;
  result: Record<string, unknown>;
}

export interface SimulatedNodeOptions {
  /** 1, 2, ...: picks the node's pod subnet 10.(60+index).1.0/24 so linked nodes do not overlap. */
  index?: number;
  tunnelDriver?: 'geneve' | 'vxlan' | 'auto';
  /** Kubernetes namespaces whose pods are enrolled. */
  enrollNamespaces?: string[];
  dnsCapture?: boolean;
  /** Dual-stack pods: IPv6 on in the node and pod namespaces, host-local also hands out fd00:(60+index)::/64. */
  ipv6?: boolean;
}

let binDirPromise: Promise<string> | undefined;
/** One weft-cni bundle per test process under a shared parent; bundles of processes that are gone are removed first. */
function weftCniBinDir(): Promise<string> {
  binDirPromise ??= (async () => {
    const parent = path.join(tmpdir(), `weft-cni-test-bin-${process.getuid?.() ?? 0}`);
    mkdirSync(parent, { recursive: true });
    for (const entry of readdirSync(parent)) {
      if (/^\d+$/.test(entry) && !existsSync(`/proc/${entry}`)) rmSync(path.join(parent, entry), { recursive: true, force: true });
    }
    const dir = path.join(parent, String(process.pid));
    await installWeftCni(dir);
    return dir;
  })();
  return binDirPromise;
}

export class SimulatedNode {
  readonly index: number;
  readonly nodeNs: string;
  readonly runtimeNs: string;
  readonly workDir: string;
  readonly stateDir: string;
  readonly nodeConfigFile: string;
  readonly bridge = 'weftbr0';
  readonly podSubnet: string;
  readonly hostIp: string;
  runtimeIp = '';
  cniPath: string[] = [];
  readonly conflist: Conflist;
  readonly pods = new Map<string, Pod>();
  private readonly extraNetns: string[] = [];
  private podCounter = 0;

  private constructor(index: number, opts: SimulatedNodeOptions) {
    this.index = index;
    this.nodeNs = uniqueName(`n${index}`);
    this.runtimeNs = uniqueName(`r${index}`);
    this.workDir = mkdtempSync(path.join(tmpdir(), `weft-node${index}-`));
    this.stateDir = path.join(this.workDir, 'state');
    this.nodeConfigFile = path.join(this.workDir, 'node.json');
    const octet = 60 + index;
    this.podSubnet = `10.${octet}.1.0/24`;
    this.hostIp = `10.${octet}.1.1`;
    const v6 = opts.ipv6 === true;
    const ipam = (name: string, start: string, end: string): Record<string, unknown> => ({
      type: 'host-local',
      ranges: [
        [{ subnet: this.podSubnet, rangeStart: `10.${octet}.1.${start}`, rangeEnd: `10.${octet}.1.${end}`, gateway: this.hostIp }],
        ...(v6 ? [[{ subnet: `fd00:${octet}::/64`, rangeStart: `fd00:${octet}::${start}`, rangeEnd: `fd00:${octet}::${end}`, gateway: `fd00:${octet}::1` }]] : []),
      ],
      routes: [{ dst: '0.0.0.0/0' }, ...(v6 ? [{ dst: '::/0' }] : [])],
      dataDir: path.join(this.workDir, `ipam-${name}`),
    });
    this.conflist = {
      cniVersion: '1.0.0',
      name: 'podnet',
      plugins: [
        { type: 'bridge', bridge: this.bridge, isGateway: true, ipMasq: false, ipam: ipam('pods', '10', '240') },
        { type: 'weft-cni', stateDir: this.stateDir, enroll: { namespaces: opts.enrollNamespaces ?? ['mesh'] } },
      ],
    };
    this.runtimeConflist = { cniVersion: '1.0.0', name: 'weftrt', plugins: [{ type: 'ptp', ipMasq: false, ipam: ipam('runtime', '250', '254') }] };
    this.options = opts;
  }
  private readonly runtimeConflist: Conflist;
  private readonly options: SimulatedNodeOptions;

  /** Creates the node and runtime namespaces and wires the runtime pod; node setup is a separate step. */
  static async create(opts: SimulatedNodeOptions = {}): Promise<SimulatedNode> {
    const node = new SimulatedNode(opts.index ?? 1, opts);
    try {
      node.cniPath = [SYSTEM_CNI_DIR, await weftCniBinDir()];
      const ipv6 = opts.ipv6 === true;
      await createNetns(node.nodeNs, { ipv6 });
      await nsMust(node.nodeNs, 'sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1', ...(ipv6 ? ['net.ipv6.conf.all.forwarding=1'] : [])]);
      const runtimePath = await createNetns(node.runtimeNs, { ipv6 });
      const result = await conflistAdd(node.nodeNs, node.cniPath, node.runtimeConflist, {
        containerId: `${node.runtimeNs}-rt`,
        netnsPath: runtimePath,
        ifname: 'eth0',
        args: { IgnoreUnknown: '1', K8S_POD_NAMESPACE: 'weft-system', K8S_POD_NAME: 'weft-node' },
      });
      node.runtimeIp = firstIp(result);
      writeFileSync(
        node.nodeConfigFile,
        JSON.stringify({
          stateDir: node.stateDir,
          tunnelDriver: opts.tunnelDriver ?? 'vxlan',
          runtimeNetns: runtimePath,
          runtimeIp: node.runtimeIp,
          routedBridge: node.bridge,
          dnsCapture: opts.dnsCapture ?? false,
        }),
      );
      return node;
    } catch (err) {
      await node.destroy();
      throw err;
    }
  }

  get runtimeNsPath(): string {
    return `/var/run/netns/${this.runtimeNs}`;
  }

  /** Runs the bundled weft-cni inside the node namespace. */
  weftCni(args: string[], env: NodeJS.ProcessEnv = {}): Promise<RunResult> {
    return nsRun(this.nodeNs, path.join(this.cniPath[1] ?? '', 'weft-cni'), args, { env: { ...process.env, ...env } });
  }

  async setup(env: NodeJS.ProcessEnv = {}): Promise<RunResult> {
    return this.weftCni(['node', 'setup', '--config', this.nodeConfigFile], env);
  }

  async mustSetup(): Promise<void> {
    const r = await this.setup();
    if (r.code !== 0) throw new Error(`node setup failed: ${r.stderr}`);
  }

  async cleanup(): Promise<RunResult> {
    return this.weftCni(['node', 'cleanup', '--config', this.nodeConfigFile]);
  }

  /** A pod: a fresh netns, wired by bridge + host-local, weft-cni chained (enrolled when `namespace` is). */
  async addPod(name: string, namespace = 'mesh'): Promise<Pod> {
    this.podCounter += 1;
    const ns = uniqueName(`p${this.index}`);
    const nsPath = await createNetns(ns, { ipv6: this.options.ipv6 === true });
    const attachment: Attachment = {
      containerId: `${ns}-${name}`,
      netnsPath: nsPath,
      ifname: 'eth0',
      args: { IgnoreUnknown: '1', K8S_POD_NAMESPACE: namespace, K8S_POD_NAME: name, K8S_POD_UID: `uid-${this.index}-${this.podCounter}` },
    };
    try {
      const result = await conflistAdd(this.nodeNs, this.cniPath, this.conflist, attachment);
      const pod: Pod = { name, namespace, ns, nsPath, ip: firstIp(result), attachment, result };
      this.pods.set(name, pod);
      return pod;
    } catch (err) {
      await deleteNetns(ns);
      throw err;
    }
  }

  async checkPod(pod: Pod): Promise<void> {
    await conflistCheck(this.nodeNs, this.cniPath, this.conflist, pod.attachment, pod.result);
  }

  async delPod(pod: Pod): Promise<void> {
    await conflistDel(this.nodeNs, this.cniPath, this.conflist, pod.attachment, pod.result);
    this.pods.delete(pod.name);
    await deleteNetns(pod.ns);
  }

  /** Links this node's namespace to another's with a veth pair and routes each pod subnet across it. */
  async link(other: SimulatedNode): Promise<void> {
    const subnet = `172.30.${this.index}${other.index}`;
    const here = `wl${other.index}`;
    const there = `wl${this.index}`;
    await must('ip', ['-n', this.nodeNs, 'link', 'add', here, 'type', 'veth', 'peer', 'name', there, 'netns', other.nodeNs]);
    await must('ip', ['-n', this.nodeNs, 'addr', 'add', `${subnet}.1/30`, 'dev', here]);
    await must('ip', ['-n', other.nodeNs, 'addr', 'add', `${subnet}.2/30`, 'dev', there]);
    await must('ip', ['-n', this.nodeNs, 'link', 'set', here, 'up']);
    await must('ip', ['-n', other.nodeNs, 'link', 'set', there, 'up']);
    await must('ip', ['-n', this.nodeNs, 'route', 'add', other.podSubnet, 'via', `${subnet}.2`]);
    await must('ip', ['-n', other.nodeNs, 'route', 'add', this.podSubnet, 'via', `${subnet}.1`]);
    if (this.options.ipv6 === true && other.options.ipv6 === true) {
      const v6 = `fd01:${this.index}${other.index}::`;
      await must('ip', ['-n', this.nodeNs, 'addr', 'add', `${v6}1/64`, 'dev', here]);
      await must('ip', ['-n', other.nodeNs, 'addr', 'add', `${v6}2/64`, 'dev', there]);
      await must('ip', ['-n', this.nodeNs, 'route', 'add', `fd00:${60 + other.index}::/64`, 'via', `${v6}2`]);
      await must('ip', ['-n', other.nodeNs, 'route', 'add', `fd00:${60 + this.index}::/64`, 'via', `${v6}1`]);
    }
  }

  /** Tracks a namespace a test created around this node so destroy() removes it. */
  adopt(ns: string): void {
    this.extraNetns.push(ns);
  }

  async destroy(): Promise<void> {
    for (const pod of this.pods.values()) await deleteNetns(pod.ns);
    this.pods.clear();
    for (const ns of this.extraNetns) await deleteNetns(ns);
    await deleteNetns(this.runtimeNs);
    await deleteNetns(this.nodeNs);
    rmSync(this.workDir, { recursive: true, force: true });
  }
}

/**
 * Two set-up nodes linked by a veth, with pod `a` on node 1 and pod `b` on node 2 (namespace mesh). The nodes join
 * `created` as soon as they exist, so the caller's cleanup destroys them even when a later step fails.
 */
export async function twoLinkedNodes(created: SimulatedNode[]): Promise<{ n1: SimulatedNode; n2: SimulatedNode; a: Pod; b: Pod }> {
  const n1 = await SimulatedNode.create({ index: 1 });
  created.push(n1);
  const n2 = await SimulatedNode.create({ index: 2 });
  created.push(n2);
  await n1.link(n2);
  await n1.mustSetup();
  await n2.mustSetup();
  return { n1, n2, a: await n1.addPod('a', 'mesh'), b: await n2.addPod('b', 'mesh') };
}

/** Every address of a CNI result, IPv4 first as the plugin listed them. */
export function allIps(result: Record<string, unknown>): string[] {
  return ((result.ips as { address: string }[] | undefined) ?? []).map((i) => i.address.split('/')[0] ?? '');
}

export function firstIp(result: Record<string, unknown>): string {
  const ips = result.ips as { address: string }[] | undefined;
  const address = ips?.[0]?.address.split('/')[0];
  if (address === undefined) throw new Error(`CNI result has no IP: ${JSON.stringify(result)}`);
  return address;
}

/**
 * Everything node setup could change in one namespace, normalized for comparison: iptables-save without
 * comments and counters, ip rules, IPv4 and IPv6 routes of every table, links, ipsets and the IPv4 conf sysctls.
 */
export async function snapshotNetns(ns: string): Promise<Record<string, string>> {
  const get = async (cmd: string, args: string[]): Promise<string> => (await nsRun(ns, cmd, args)).stdout;
  const iptables = (await get('iptables-save', []))
    .split('\n')
    .filter((l) => !l.startsWith('#'))
    .map((l) => l.replace(/\[\d+:\d+\]/, '[0:0]'))
    .join('\n');
  // Details included (bridge-port isolation shows there); bridge timers tick and are dropped.
  // Carrier state settles asynchronously after a veth appears; it is not something setup changes.
  const volatileFlags = new Set(['NO-CARRIER', 'LOWER_UP', 'M-DOWN']);
  const links = (JSON.parse((await get('ip', ['-d', '-j', 'link', 'show'])) || '[]') as unknown[])
    .map((link) =>
      JSON.stringify(link, (key, value: unknown) => {
        if (key.endsWith('_timer') || key === 'operstate') return undefined;
        if (key === 'flags' && Array.isArray(value)) return (value as unknown[]).filter((f) => !volatileFlags.has(String(f)));
        return value;
      }),
    )
    .join('\n');
  const sysctls = (await get('sysctl', ['-a', '--pattern', '^net\\.ipv4\\.conf\\.']))
    .split('\n')
    .filter((l) => /\.(rp_filter|accept_local|proxy_arp|proxy_arp_pvlan|send_redirects) =/.test(l))
    .sort()
    .join('\n');
  return {
    iptables,
    rules: await get('ip', ['rule', 'show']),
    routes4: await get('ip', ['-4', 'route', 'show', 'table', 'all']),
    routes6: await get('ip', ['-6', 'route', 'show', 'table', 'all']),
    links,
    ipsets: await get('ipset', ['save']),
    nft: await get('nft', ['list', 'tables']),
    sysctls,
  };
}

