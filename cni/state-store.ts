/** The record of exactly what weft-cni added (node.json, one pods/<id>.json per attachment), written ahead of each change and atomically (write, fsync, rename), so DEL, cleanup and crash repair undo precisely that. */
import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import path from 'node:path';
import { WeftError } from '../runtime/errors.js';
import type { IptablesBackend } from './iptables-backend.js';
import type { ChainPlan, IpRulePlan, RedirectInput, RoutePlan } from './rule-plan.js';

export interface SysctlRecord {
  key: string;
  /** The value before weft changed it; restored on cleanup. */
  previous: string;
}

/** What was added in one namespace; every list is appended to before the change is made. */
export interface AppliedRecord {
  links: string[];
  sysctls: SysctlRecord[];
  /** ipsets weft created (one that existed already is used, never destroyed). */
  ipsets: string[];
  chains: ChainPlan[];
  /** nft tables that did not exist before weft's first rule. */
  nftTables: string[];
  routes: RoutePlan[];
  ipRules: IpRulePlan[];
}

export const emptyRecord = (): AppliedRecord => ({ links: [], sysctls: [], ipsets: [], chains: [], nftTables: [], routes: [], ipRules: [] });

export interface NodeState {
  version: 1;
  phase: 'applying' | 'ready' | 'removing';
  input: RedirectInput;
  backend: IptablesBackend;
  runtimeNetns: string;
  /** `net:[inode]` of the runtime namespace at setup: a path like /proc/self/ns/net can later name another namespace. */
  runtimeNetnsId?: string;
  routedBridge?: string;
  /** Ports of routedBridge that existed at setup (pods wired before weft) and were isolated by it. */
  isolatedPorts?: string[];
  node: AppliedRecord;
  runtime: AppliedRecord;
}

export interface PodState {
  version: 1;
  containerId: string;
  ifname: string;
  ips: string[];
  comment: string;
  ipsetEntries: { set: string; ip: string }[];
  routes: RoutePlan[];
  sysctls: SysctlRecord[];
  /** A bridge port weft isolated (routedBridge). */
  isolatedPort?: string;
  /** In-pod mode: what was added inside the pod's own namespace, and what the node agent needs to replay it. */
  inpod?: InpodRecord;
}

export interface InpodRecord {
  uid: string;
  info: { name: string; namespace: string; serviceAccount: string };
  netns: string;
  /** `dev:inode` of the namespace at ADD: DEL and the agent never touch a namespace that merely reuses the path. */
  netnsId: string;
  backend: IptablesBackend;
  record: AppliedRecord;
  /** The IPv6 rules of a pod with an IPv6 address (ip6tables, `ip -6`). */
  record6?: AppliedRecord;
}

/** Test-only fault injection: WEFT_CNI_FAULT_AFTER_WRITES=N kills the process after the Nth state write, as a crash mid-setup would. */
let writesLeft = Number(process.env.WEFT_CNI_FAULT_AFTER_WRITES ?? '0') || Infinity;

function writeAtomic(file: string, value: unknown): void {
  mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  const fd = openSync(tmp, 'w', 0o600);
  try {
    writeSync(fd, JSON.stringify(value, null, 1));
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
  if (--writesLeft <= 0) process.kill(process.pid, 'SIGKILL');
}

function readJson<T>(file: string): T | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new WeftError('WEFT_ERR_CNI', `cannot read weft-cni state ${file}`, { cause: err });
  }
  try {
    return JSON.parse(text) as T;
  } catch (err) {
    throw new WeftError('WEFT_ERR_CNI', `weft-cni state ${file} is corrupt; remove it after checking the node by hand`, { cause: err });
  }
}

export class StateStore {
  readonly dir: string;

  constructor(dir: string) {
    this.dir = dir;
  }

  get lockFile(): string {
    return path.join(this.dir, 'lock');
  }
  private get nodeFile(): string {
    return path.join(this.dir, 'node.json');
  }
  private podFile(containerId: string, ifname: string): string {
    return path.join(this.dir, 'pods', `${containerId}_${ifname}.json`);
  }

  readNode(): NodeState | undefined {
    return readJson<NodeState>(this.nodeFile);
  }
  writeNode(state: NodeState): void {
    writeAtomic(this.nodeFile, state);
  }
  removeNode(): void {
    rmSync(this.nodeFile, { force: true });
  }

  readPod(containerId: string, ifname: string): PodState | undefined {
    return readJson<PodState>(this.podFile(containerId, ifname));
  }
  writePod(state: PodState): void {
    writeAtomic(this.podFile(state.containerId, state.ifname), state);
  }
  removePod(containerId: string, ifname: string): void {
    rmSync(this.podFile(containerId, ifname), { force: true });
  }
  listPods(): PodState[] {
    let files: string[];
    try {
      files = readdirSync(path.join(this.dir, 'pods')).filter((f) => f.endsWith('.json'));
    } catch {
      return [];
    }
    return files.map((f) => readJson<PodState>(path.join(this.dir, 'pods', f))).filter((p): p is PodState => p !== undefined);
  }
}
