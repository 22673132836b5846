/** `weft-cni node setup|cleanup`: resolves the node's facts, applies the node and runtime-namespace plans under the lock, and removes exactly what the state records. */
import { existsSync } from 'node:fs';
import { WeftError } from '../runtime/errors.js';
import { createLogger } from '../runtime/log.js';
import { createCommandRunner, type CommandRunner } from './command-runner.js';
import type { NodeConfig } from './node-config.js';
import { acquireFileLock } from './file-lock.js';
import { detectIptablesBackend, type IptablesBackend } from './iptables-backend.js';
import { NetnsApplier, undoRecord } from './netns-applier.js';
import { bridgePorts, isolatePort, routeBridge, undoPod } from './pod-enrollment.js';
import { planNode, planRuntime, type RedirectInput } from './rule-plan.js';
import { emptyRecord, StateStore, type NodeState } from './state-store.js';
import { boundUdpPorts, firstFreePort, resolveTunnelDriver, tunnelLinkPorts } from './tunnel-driver.js';

const log = createLogger('cni');

export interface NodeRunners {
  node: CommandRunner;
  runtime: CommandRunner;
}

export const defaultRunners = (config: Pick<NodeConfig, 'nodeNetns' | 'runtimeNetns'>): NodeRunners => ({
  node: createCommandRunner(config.nodeNetns),
  runtime: createCommandRunner(config.runtimeNetns),
});

/** The node-side veth toward the runtime and the node's source address, from `ip route get $ZIP`. */
async function routeToRuntime(runner: CommandRunner, runtimeIp: string): Promise<{ dev: string; src: string }> {
  const out = await runner.run('ip', ['-j', 'route', 'get', runtimeIp]);
  const route = (JSON.parse(out) as { dev?: string; prefsrc?: string }[])[0];
  if (route?.dev === undefined || route.prefsrc === undefined) {
    throw new WeftError('WEFT_ERR_CNI', `no route from the node to the runtime pod ${runtimeIp}; is the runtime pod running and wired by the primary CNI?`);
  }
  return { dev: route.dev, src: route.prefsrc };
}

export async function resolveInput(config: NodeConfig, runners: NodeRunners, previous: NodeState | undefined): Promise<{ input: RedirectInput; backend: IptablesBackend }> {
  const route = config.runtimeVeth === undefined || config.hostIp === undefined ? await routeToRuntime(runners.node, config.runtimeIp) : undefined;
  const driver = await resolveTunnelDriver(runners.node, config.tunnelDriver);
  let tunnelPort = config.tunnelPort;
  if (tunnelPort === undefined && previous?.input.driver === driver) tunnelPort = previous.input.tunnelPort;
  if (tunnelPort === undefined) {
    const used = new Set<number>();
    for (const r of [runners.node, runners.runtime]) {
      for (const p of [...(await boundUdpPorts(r)), ...(await tunnelLinkPorts(r))]) used.add(p);
    }
    tunnelPort = firstFreePort(driver, used);
  }
  const backend = config.iptablesBackend === 'auto' ? (await detectIptablesBackend(runners.node)).backend : config.iptablesBackend;
  return {
    backend,
    input: {
      names: { ...config.names },
      driver,
      tunnelPort,
      hostIp: config.hostIp ?? route?.src ?? '',
      runtimeIp: config.runtimeIp,
      runtimeVeth: config.runtimeVeth ?? route?.dev ?? '',
      runtimeInterface: config.runtimeInterface,
      dnsCapture: config.dnsCapture,
    },
  };
}

const sameInput = (a: RedirectInput, b: RedirectInput): boolean => JSON.stringify(a) === JSON.stringify(b);

/** Idempotent: a second run changes nothing; a run after a crash finishes what the first started. */
export async function setupNode(config: NodeConfig, runners: NodeRunners = defaultRunners(config)): Promise<NodeState> {
  if (!existsSync(config.runtimeNetns)) {
    throw new WeftError('WEFT_ERR_CNI', `runtime network namespace ${config.runtimeNetns} does not exist; start the runtime pod first`);
  }
  const store = new StateStore(config.stateDir);
  const lock = await acquireFileLock(store.lockFile, config.lockTimeoutMs);
  try {
    let previous = store.readNode();
    const { input, backend } = await resolveInput(config, runners, previous);
    if (previous !== undefined && (!sameInput(previous.input, input) || previous.backend !== backend || previous.runtimeNetns !== config.runtimeNetns)) {
      log.info({ before: previous.input, after: input }, 'node configuration changed; removing the previous rules first');
      await removeNodeState(store, previous, runners);
      previous = undefined;
    }
    const state: NodeState = previous ?? {
      version: 1,
      phase: 'applying',
      input,
      backend,
      runtimeNetns: config.runtimeNetns,
      node: emptyRecord(),
      runtime: emptyRecord(),
    };
    state.phase = 'applying';
    const netnsId = await namespaceId(runners.runtime);
    if (state.runtimeNetnsId !== undefined && state.runtimeNetnsId !== netnsId) {
      // The runtime pod was recreated: its old namespace took our devices and rules with it.
      state.runtime = emptyRecord();
    }
    state.runtimeNetnsId = netnsId;
    if (config.routedBridge !== undefined) state.routedBridge = config.routedBridge;
    const persist = (): void => store.writeNode(state);
    persist();
    await new NetnsApplier(runners.node, state.node, persist).apply(planNode(input), backend);
    await new NetnsApplier(runners.runtime, state.runtime, persist).apply(planRuntime(input), backend);
    if (state.routedBridge !== undefined) await isolateExistingPorts(runners.node, store, state, state.routedBridge);
    state.phase = 'ready';
    persist();
    log.info({ driver: input.driver, tunnelPort: input.tunnelPort, backend, hostIp: input.hostIp, runtimeIp: input.runtimeIp }, 'node redirection ready');
    return state;
  } finally {
    await lock.release();
  }
}

/** The identity (`net:[inode]`) of the namespace a runner executes in. */
async function namespaceId(runner: CommandRunner): Promise<string> {
  return (await runner.run('readlink', ['/proc/self/ns/net'])).trim();
}

/** Pods wired before setup sit on the bridge un-isolated; ADD handles every later one. */
async function isolateExistingPorts(runner: CommandRunner, store: StateStore, state: NodeState, bridge: string): Promise<void> {
  const ports = await bridgePorts(runner, bridge);
  if (ports.length === 0) return;
  await routeBridge(runner, store, state, bridge);
  const owned = new Set(store.listPods().map((p) => p.isolatedPort));
  state.isolatedPorts ??= [];
  for (const port of ports) {
    if (owned.has(port)) continue;
    if (!state.isolatedPorts.includes(port)) {
      state.isolatedPorts.push(port);
      store.writeNode(state);
    }
    await isolatePort(runner, port, true);
  }
}

async function removeNodeState(store: StateStore, state: NodeState, runners: NodeRunners): Promise<void> {
  state.phase = 'removing';
  store.writeNode(state);
  for (const port of state.isolatedPorts ?? []) await runners.node.exec('ip', ['link', 'set', 'dev', port, 'type', 'bridge_slave', 'isolated', 'off']);
  for (const pod of store.listPods()) {
    await undoPod(runners.node, pod);
    store.removePod(pod.containerId, pod.ifname);
  }
  // Only the namespace setup wrote to: if the path now names another one (or none), there is nothing of ours there.
  if (existsSync(state.runtimeNetns) && (state.runtimeNetnsId === undefined || (await namespaceId(runners.runtime)) === state.runtimeNetnsId)) {
    await undoRecord(runners.runtime, state.runtime, state.backend);
  }
  await undoRecord(runners.node, state.node, state.backend);
  store.removeNode();
}

/** Removes every pod entry and node/runtime change the state records; true when there was something to remove. */
export async function cleanupNode(config: Pick<NodeConfig, 'stateDir' | 'lockTimeoutMs' | 'nodeNetns'>, runners?: NodeRunners): Promise<boolean> {
  const store = new StateStore(config.stateDir);
  const lock = await acquireFileLock(store.lockFile, config.lockTimeoutMs);
  try {
    const state = store.readNode();
    if (state === undefined) return false;
    await removeNodeState(store, state, runners ?? defaultRunners({ nodeNetns: config.nodeNetns, runtimeNetns: state.runtimeNetns }));
    log.info({ stateDir: config.stateDir }, 'node redirection removed');
    return true;
  } finally {
    await lock.release();
  }
}
