/** ADD/DEL/CHECK of in-pod mode: the pod's own namespace gets weft's rules (recorded before each change), then the node agent hands the namespace to the runtime and ADD returns only once the runtime listens there; DEL undoes exactly the record. The node namespace is not touched. */
import { existsSync, statSync } from 'node:fs';
import { WeftError } from '../runtime/errors.js';
import { callAgent } from './agent-client.js';
import type { PluginConfig } from './cni-config.js';
import { createCommandRunner, type CommandRunner } from './command-runner.js';
import { readIptables } from './iptables-backend.js';
import { NetnsApplier, undoRecord } from './netns-applier.js';
import { ipv6Runner } from './ipv6-runner.js';
import { planInpodPod } from './inpod-rule-plan.js';
import { emptyRecord, type AppliedRecord, type PodState, type StateStore } from './state-store.js';

export interface InpodPodRequest {
  containerId: string;
  ifname: string;
  ips: string[];
  netns: string;
  uid: string;
  name: string;
  namespace: string;
}

function netnsIdOfPath(path: string): string {
  const st = statSync(path);
  return `${st.dev}:${st.ino}`;
}

/** iptables-nft inside pods: a fresh namespace has no kubelet hint to detect, and nft is what current distributions ship. */
const POD_BACKEND = 'nft' as const;

export async function addInpodPod(config: PluginConfig, store: StateStore, req: InpodPodRequest): Promise<void> {
  const netnsId = netnsIdOfPath(req.netns);
  const existing = store.readPod(req.containerId, req.ifname);
  const pod: PodState =
    existing?.inpod?.netnsId === netnsId
      ? existing
      : {
          version: 1,
          containerId: req.containerId,
          ifname: req.ifname,
          ips: req.ips,
          comment: req.uid,
          ipsetEntries: [],
          routes: [],
          sysctls: [],
          inpod: { uid: req.uid, info: { name: req.name, namespace: req.namespace, serviceAccount: '' }, netns: req.netns, netnsId, backend: POD_BACKEND, record: emptyRecord() },
        };
  const inpod = pod.inpod;
  if (inpod === undefined) throw new WeftError('WEFT_ERR_CNI', `pod ${req.containerId} was enrolled in tunnel mode; delete it before switching to inpod`);
  const persist = (): void => store.writePod(pod);
  const runner = createCommandRunner(req.netns);
  try {
    persist();
    const plan = { chainPrefix: config.chainPrefix, dnsCapture: config.dnsCapture };
    await new NetnsApplier(runner, inpod.record, persist).apply(planInpodPod(plan), inpod.backend);
    // A pod with an IPv6 address (IPv6-only or dual-stack) gets the same rules in the IPv6 tables, recorded apart.
    if (req.ips.some((ip) => ip.includes(':'))) {
      inpod.record6 ??= emptyRecord();
      await new NetnsApplier(ipv6Runner(runner), inpod.record6, persist).apply(planInpodPod({ ...plan, family: 6 }), inpod.backend);
    }
    // Only now does the runtime hear of the pod; its ACK means it accepts on every port the rules redirect to.
    await callAgent(config.agentSocket, { op: 'add', uid: req.uid, name: req.name, namespace: req.namespace, serviceAccount: '', netns: req.netns }, config.agentTimeoutMs);
  } catch (err) {
    // Leave the namespace as it was (the sandbox is torn down, or ADD retried from scratch), and let the agent forget
    // the pod, so a runtime that comes back later is not handed a namespace without rules.
    await undoInpodPod(config, store, pod);
    throw err;
  }
}

/** Removes the pod's rules (only from the very namespace ADD programmed) and tells the agent; safe to repeat. */
export async function undoInpodPod(config: PluginConfig, store: StateStore, pod: PodState): Promise<void> {
  const inpod = pod.inpod;
  if (inpod !== undefined) {
    // An agent that is down rebuilds its cache from these records, which no longer list the pod.
    await callAgent(config.agentSocket, { op: 'del', uid: inpod.uid }, config.agentTimeoutMs).catch(() => undefined);
    if (existsSync(inpod.netns) && netnsIdOfPath(inpod.netns) === inpod.netnsId) {
      const runner = createCommandRunner(inpod.netns);
      if (inpod.record6 !== undefined) await undoRecord(ipv6Runner(runner), inpod.record6, inpod.backend);
      await undoRecord(runner, inpod.record, inpod.backend);
    }
  }
  store.removePod(pod.containerId, pod.ifname);
}

/** CHECK: every chain of the record is still in the pod's namespace. */
export async function checkInpodPod(pod: PodState): Promise<string[]> {
  const inpod = pod.inpod;
  if (inpod === undefined || !existsSync(inpod.netns)) return [];
  const runner = createCommandRunner(inpod.netns);
  const missing = async (r: CommandRunner, record: AppliedRecord, family: string): Promise<string[]> => {
    const tables = await readIptables(r, inpod.backend);
    return record.chains.filter((c) => tables.get(c.table)?.chains.has(c.chain) !== true).map((c) => `${family} chain ${c.table}/${c.chain} in ${inpod.netns}`);
  };
  return [...(await missing(runner, inpod.record, 'IPv4')), ...(inpod.record6 === undefined ? [] : await missing(ipv6Runner(runner), inpod.record6, 'IPv6'))];
}
