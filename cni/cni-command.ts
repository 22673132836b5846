/** The CNI protocol side of weft-cni (spec 1.0/1.1): environment and stdin in, a result or a spec error out; every input check happens before any change to the node. */
import { existsSync } from 'node:fs';
import { isIPv4, isIPv6 } from 'node:net';
import { weftErrorOf } from '../runtime/errors.js';
import { CNI_ERROR_CODES, CURRENT_CNI_VERSION, SUPPORTED_CNI_VERSIONS } from './cni-constants.js';
import { decodePluginConfig, isEnrolled, type PluginConfig } from './cni-config.js';
import { createCommandRunner, type CommandRunner } from './command-runner.js';
import { acquireFileLock } from './file-lock.js';
import { attachPod, checkPod, undoPod } from './pod-enrollment.js';
import { StateStore } from './state-store.js';
import { addInpodPod, checkInpodPod, undoInpodPod } from './inpod-enrollment.js';

export const CNI_COMMANDS = ['ADD', 'DEL', 'CHECK', 'VERSION', 'STATUS', 'GC'] as const;
export type CniCommand = (typeof CNI_COMMANDS)[number];

/** A spec error: printed as `{cniVersion, code, msg, details}` on stdout with a non-zero exit. */
export class CniError extends Error {
  readonly code: number;
  readonly details: string;

  constructor(code: number, msg: string, details = '') {
    super(msg);
    this.code = code;
    this.details = details;
    this.name = 'CniError';
  }
}

export interface CniOutcome {
  exitCode: number;
  /** What goes to stdout (the protocol channel); empty for DEL, CHECK, STATUS and GC success. */
  stdout: string;
}

interface CniEnv {
  command: CniCommand;
  containerId: string;
  netns: string;
  ifname: string;
  args: Map<string, string>;
}

const SUPPORTED = SUPPORTED_CNI_VERSIONS as readonly string[];

function parseArgs(text: string | undefined): Map<string, string> {
  const out = new Map<string, string>();
  for (const pair of (text ?? '').split(';')) {
    const eq = pair.indexOf('=');
    if (eq > 0) out.set(pair.slice(0, eq), pair.slice(eq + 1));
  }
  return out;
}

function readEnv(env: NodeJS.ProcessEnv): CniEnv {
  const command = env.CNI_COMMAND;
  if (command === undefined || !(CNI_COMMANDS as readonly string[]).includes(command)) {
    throw new CniError(CNI_ERROR_CODES.invalidEnvironment, `CNI_COMMAND must be one of ${CNI_COMMANDS.join(', ')}`, `got ${JSON.stringify(command ?? null)}`);
  }
  const c = command as CniCommand;
  const needsContainer = c === 'ADD' || c === 'DEL' || c === 'CHECK';
  const missing = needsContainer ? ['CNI_CONTAINERID', 'CNI_IFNAME', ...(c === 'DEL' ? [] : ['CNI_NETNS'])].filter((k) => (env[k] ?? '') === '') : [];
  if (missing.length > 0) throw new CniError(CNI_ERROR_CODES.invalidEnvironment, `missing required environment variables for ${c}`, missing.join(', '));
  return { command: c, containerId: env.CNI_CONTAINERID ?? '', netns: env.CNI_NETNS ?? '', ifname: env.CNI_IFNAME ?? '', args: parseArgs(env.CNI_ARGS) };
}

function parseConfig(stdin: string): { config: PluginConfig; raw: Record<string, unknown> } {
  let raw: unknown;
  try {
    raw = JSON.parse(stdin);
  } catch (err) {
    throw new CniError(CNI_ERROR_CODES.decodeFailure, 'network configuration on stdin is not valid JSON', (err as Error).message);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new CniError(CNI_ERROR_CODES.decodeFailure, 'network configuration must be a JSON object');
  const version = (raw as { cniVersion?: unknown }).cniVersion;
  if (typeof version !== 'string' || !SUPPORTED.includes(version)) {
    throw new CniError(CNI_ERROR_CODES.incompatibleVersion, `incompatible CNI version ${JSON.stringify(version ?? null)}`, `weft-cni supports ${SUPPORTED.join(', ')}`);
  }
  const decoded = decodePluginConfig(raw);
  if (!decoded.ok) throw new CniError(CNI_ERROR_CODES.invalidConfig, 'invalid weft-cni network configuration', decoded.problems.join('; '));
  return { config: decoded.value, raw: raw as Record<string, unknown> };
}

interface PrevResult {
  cniVersion?: string;
  interfaces?: { name?: string; sandbox?: string }[];
  ips?: { address?: string }[];
}

/** The pod's addresses from prevResult: IPv4 ones, plus IPv6 ones when `ipv6` (in-pod mode captures both families). */
function podAddresses(prev: PrevResult, ipv6: boolean): string[] {
  const ips = (prev.ips ?? []).map((i) => (i.address ?? '').split('/')[0] ?? '').filter((a) => isIPv4(a) || (ipv6 && isIPv6(a)));
  return [...new Set(ips)];
}

function requirePrevResult(config: PluginConfig, command: CniCommand): PrevResult {
  const prev = config.prevResult;
  if (typeof prev !== 'object' || prev === null || Array.isArray(prev)) {
    throw new CniError(
      CNI_ERROR_CODES.invalidConfig,
      `${command} needs prevResult: weft-cni is a chained plugin and runs after the primary CNI in a .conflist`,
      'prevResult is missing or not an object',
    );
  }
  const p = prev as PrevResult;
  if (p.ips !== undefined && !Array.isArray(p.ips)) throw new CniError(CNI_ERROR_CODES.invalidConfig, 'prevResult.ips must be a list');
  if (p.interfaces !== undefined && !Array.isArray(p.interfaces)) throw new CniError(CNI_ERROR_CODES.invalidConfig, 'prevResult.interfaces must be a list');
  return p;
}

export interface CniDeps {
  runner: CommandRunner;
}

/** Runs one CNI invocation; never throws (every failure becomes a spec error outcome). */
export async function runCni(env: NodeJS.ProcessEnv, stdin: string, deps: CniDeps = { runner: createCommandRunner() }): Promise<CniOutcome> {
  let version = CURRENT_CNI_VERSION;
  try {
    const e = readEnv(env);
    if (e.command === 'VERSION') {
      return { exitCode: 0, stdout: JSON.stringify({ cniVersion: CURRENT_CNI_VERSION, supportedVersions: SUPPORTED }) };
    }
    const { config, raw } = parseConfig(stdin);
    version = config.cniVersion;
    const store = new StateStore(config.stateDir);
    switch (e.command) {
      case 'ADD':
        return await add(e, config, store, deps.runner);
      case 'DEL':
        if (config.mode === 'inpod') {
          // In-pod state is per pod (its own namespace, its own record): no node-wide lock.
          const pod = store.readPod(e.containerId, e.ifname);
          if (pod !== undefined) await undoInpodPod(config, store, pod);
          return { exitCode: 0, stdout: '' };
        }
        await withLock(store, config, async () => {
          const pod = store.readPod(e.containerId, e.ifname);
          if (pod === undefined) return;
          await undoPod(deps.runner, pod);
          store.removePod(e.containerId, e.ifname);
        });
        return { exitCode: 0, stdout: '' };
      case 'CHECK':
        return await check(e, config, store, deps.runner);
      case 'STATUS': {
        if (config.mode === 'inpod') {
          if (!existsSync(config.agentSocket)) throw new CniError(CNI_ERROR_CODES.notAvailable, `the weft node agent is not running (no ${config.agentSocket}); start \`weft-cni agent\``);
          return { exitCode: 0, stdout: '' };
        }
        const node = store.readNode();
        if (node?.phase !== 'ready') throw new CniError(CNI_ERROR_CODES.notAvailable, 'weft node redirection is not set up; run `weft-cni node setup`');
        return { exitCode: 0, stdout: '' };
      }
      case 'GC':
        await gc(raw, config, store, deps.runner);
        return { exitCode: 0, stdout: '' };
    }
  } catch (err) {
    return errorOutcome(version, err);
  }
}

export function errorOutcome(cniVersion: string, err: unknown): CniOutcome {
  // A failed command (WeftError) is the spec's I/O failure; anything else is a weft bug, code 100 (plugin-specific range).
  const e =
    err instanceof CniError
      ? err
      : new CniError(
          weftErrorOf(err) !== undefined ? CNI_ERROR_CODES.ioFailure : 100,
          err instanceof Error ? err.message : String(err),
          err instanceof Error && err.cause instanceof Error ? err.cause.message : '',
        );
  return { exitCode: 1, stdout: JSON.stringify({ cniVersion, code: e.code, msg: e.message, details: e.details }) };
}

async function withLock<T>(store: StateStore, config: PluginConfig, fn: () => Promise<T>): Promise<T> {
  const lock = await acquireFileLock(store.lockFile, config.lockTimeoutMs);
  try {
    return await fn();
  } finally {
    await lock.release();
  }
}

async function add(e: CniEnv, config: PluginConfig, store: StateStore, runner: CommandRunner): Promise<CniOutcome> {
  const prev = requirePrevResult(config, 'ADD');
  if (!existsSync(e.netns)) throw new CniError(CNI_ERROR_CODES.unknownContainer, `network namespace ${e.netns} does not exist`, 'CNI_NETNS');
  const result = JSON.stringify({ ...prev, cniVersion: config.cniVersion });
  const enrolled = isEnrolled(config.enroll, e.args.get('K8S_POD_NAMESPACE'), e.args.get('K8S_POD_NAME'));
  const inpod = config.mode === 'inpod';
  const ips = podAddresses(prev, inpod);
  if (enrolled && ips.length === 0) {
    throw new CniError(CNI_ERROR_CODES.invalidConfig, `prevResult has no ${inpod ? 'IP' : 'IPv4'} address for the pod`, inpod ? 'in-pod mode needs an IPv4 or IPv6 address' : 'tunnel mode redirection is IPv4-only');
  }
  if (inpod) {
    if (!enrolled) return { exitCode: 0, stdout: result };
    await addInpodPod(config, store, {
      containerId: e.containerId,
      ifname: e.ifname,
      ips,
      netns: e.netns,
      uid: e.args.get('K8S_POD_UID') ?? e.containerId,
      name: e.args.get('K8S_POD_NAME') ?? e.containerId,
      namespace: e.args.get('K8S_POD_NAMESPACE') ?? '',
    });
    return { exitCode: 0, stdout: result };
  }
  // An unenrolled pod on a node weft has not set up needs nothing from weft: no lock, no state.
  if (!enrolled && store.readNode()?.phase !== 'ready') return { exitCode: 0, stdout: result };
  await withLock(store, config, async () => {
    const node = store.readNode();
    if (node?.phase !== 'ready') {
      if (!enrolled) return;
      throw new CniError(CNI_ERROR_CODES.tryAgainLater, 'weft node redirection is not set up yet; the pod cannot be enrolled', 'run `weft-cni node setup` (the DaemonSet does)');
    }
    try {
      await attachPod(
        runner,
        store,
        node,
        {
          containerId: e.containerId,
          ifname: e.ifname,
          ips,
          comment: e.args.get('K8S_POD_UID') ?? e.containerId,
          hostInterfaces: (prev.interfaces ?? []).filter((i) => i.sandbox === undefined && typeof i.name === 'string').map((i) => i.name as string),
        },
        enrolled,
      );
    } catch (err) {
      // Leave nothing half-applied: undo what the record says was added, then report.
      const pod = store.readPod(e.containerId, e.ifname);
      if (pod !== undefined) await undoPod(runner, pod);
      store.removePod(e.containerId, e.ifname);
      throw err;
    }
  });
  return { exitCode: 0, stdout: result };
}

async function check(e: CniEnv, config: PluginConfig, store: StateStore, runner: CommandRunner): Promise<CniOutcome> {
  // CHECK arrived with spec 0.4.0; older configs cannot ask for it.
  if (config.cniVersion.startsWith('0.3.')) throw new CniError(CNI_ERROR_CODES.incompatibleVersion, `CHECK is not defined for cniVersion ${config.cniVersion} (needs 0.4.0 or later)`);
  requirePrevResult(config, 'CHECK');
  if (!existsSync(e.netns)) throw new CniError(CNI_ERROR_CODES.unknownContainer, `network namespace ${e.netns} does not exist`, 'CNI_NETNS');
  const pod = store.readPod(e.containerId, e.ifname);
  if (pod === undefined) return { exitCode: 0, stdout: '' };
  const missing = pod.inpod === undefined ? await checkPod(runner, pod) : await checkInpodPod(pod);
  if (missing.length > 0) throw new CniError(CNI_ERROR_CODES.ioFailure, `weft redirection for ${e.containerId} is incomplete`, missing.join('; '));
  return { exitCode: 0, stdout: '' };
}

/** GC (spec 1.1): drop every attachment not in cni.dev/valid-attachments. */
async function gc(raw: Record<string, unknown>, config: PluginConfig, store: StateStore, runner: CommandRunner): Promise<void> {
  const valid = raw['cni.dev/valid-attachments'];
  if (!Array.isArray(valid)) throw new CniError(CNI_ERROR_CODES.invalidConfig, 'GC needs cni.dev/valid-attachments (a list of {containerID, ifname})');
  const keep = new Set(valid.map((a: { containerID?: unknown; ifname?: unknown }) => `${String(a.containerID)}/${String(a.ifname)}`));
  await withLock(store, config, async () => {
    for (const pod of store.listPods()) {
      if (keep.has(`${pod.containerId}/${pod.ifname}`)) continue;
      if (pod.inpod !== undefined) {
        await undoInpodPod(config, store, pod);
        continue;
      }
      await undoPod(runner, pod);
      store.removePod(pod.containerId, pod.ifname);
    }
  });
}

