/** weft-cni's entry in the chained conflist, decoded by hand into valid-or-problems (no schema library: every pod sandbox starts this process, and its start-up time is ADD's latency). */

export const DEFAULT_STATE_DIR = '/var/run/weft-cni';
export const DEFAULT_LOCK_TIMEOUT_MS = 60_000;
export const DEFAULT_AGENT_SOCKET = '/var/run/weft-cni/pluginevent.sock';
/** How long ADD waits for the runtime to confirm it listens in the pod (a runtime being upgraded comes back within it). */
export const DEFAULT_AGENT_TIMEOUT_MS = 30_000;

/** `tunnel`: the Geneve/VXLAN node design (node rules, tunnels, TPROXY in the runtime pod); `inpod`: rules in each pod's namespace, listeners there. */
export const CAPTURE_MODES = ['tunnel', 'inpod'] as const;
export type CaptureMode = (typeof CAPTURE_MODES)[number];

export interface EnrollConfig {
  /** Every pod of these namespaces is enrolled. */
  namespaces: string[];
  /** Single pods as "namespace/name". */
  pods: string[];
  /** Opt-out, wins over the lists (Istio's dataplane-mode=none). */
  excludePods: string[];
}

/** Our entry; unknown keys are the runtime's (capabilities, runtimeConfig, args) and pass. */
export interface PluginConfig {
  cniVersion: string;
  name: string;
  type: string;
  stateDir: string;
  enroll: EnrollConfig;
  lockTimeoutMs: number;
  mode: CaptureMode;
  /** inpod: the node agent's plugin-event socket. */
  agentSocket: string;
  agentTimeoutMs: number;
  /** inpod: the pod's DNS (UDP and TCP 53) to the runtime's 15053. */
  dnsCapture: boolean;
  /** inpod: chain name prefix inside the pod's namespace. */
  chainPrefix: string;
  prevResult?: unknown;
}

export type PluginDecoded = { ok: true; value: PluginConfig } | { ok: false; problems: string[] };

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

export function decodePluginConfig(raw: unknown): PluginDecoded {
  const problems: string[] = [];
  if (!isObject(raw)) return { ok: false, problems: ['(root): expected an object'] };
  const text = (key: string, fallback?: string): string => {
    const v = raw[key] ?? fallback;
    if (typeof v === 'string' && v !== '') return v;
    problems.push(`${key}: expected a non-empty string`);
    return '';
  };
  const list = (obj: Record<string, unknown>, key: string, at: string): string[] => {
    const v = obj[key] ?? [];
    if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v;
    problems.push(`${at}.${key}: expected a list of strings`);
    return [];
  };
  const enrollRaw = raw.enroll ?? {};
  let enroll: EnrollConfig = { namespaces: [], pods: [], excludePods: [] };
  if (!isObject(enrollRaw)) problems.push('enroll: expected an object');
  else {
    for (const key of Object.keys(enrollRaw)) if (!['namespaces', 'pods', 'excludePods'].includes(key)) problems.push(`enroll.${key}: unknown field`);
    enroll = { namespaces: list(enrollRaw, 'namespaces', 'enroll'), pods: list(enrollRaw, 'pods', 'enroll'), excludePods: list(enrollRaw, 'excludePods', 'enroll') };
  }
  const lock = raw.lockTimeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS;
  if (typeof lock !== 'number' || !Number.isInteger(lock) || lock <= 0) problems.push('lockTimeoutMs: expected a positive integer');
  const mode = raw.mode ?? 'tunnel';
  if (typeof mode !== 'string' || !(CAPTURE_MODES as readonly string[]).includes(mode)) problems.push(`mode: expected one of ${CAPTURE_MODES.join(', ')}`);
  const agentTimeout = raw.agentTimeoutMs ?? DEFAULT_AGENT_TIMEOUT_MS;
  if (typeof agentTimeout !== 'number' || !Number.isInteger(agentTimeout) || agentTimeout <= 0) problems.push('agentTimeoutMs: expected a positive integer');
  const dns = raw.dnsCapture ?? false;
  if (typeof dns !== 'boolean') problems.push('dnsCapture: expected true or false');
  const chainPrefix = text('chainPrefix', 'WEFT');
  if (!/^[A-Za-z][A-Za-z0-9_-]{0,18}$/.test(chainPrefix)) problems.push('chainPrefix: expected letters, digits, "_" or "-" (at most 19)');
  const value: PluginConfig = {
    cniVersion: text('cniVersion'),
    name: text('name'),
    type: text('type'),
    stateDir: text('stateDir', DEFAULT_STATE_DIR),
    enroll,
    lockTimeoutMs: typeof lock === 'number' ? lock : DEFAULT_LOCK_TIMEOUT_MS,
    mode: mode as CaptureMode,
    agentSocket: text('agentSocket', DEFAULT_AGENT_SOCKET),
    agentTimeoutMs: typeof agentTimeout === 'number' ? agentTimeout : DEFAULT_AGENT_TIMEOUT_MS,
    dnsCapture: dns === true,
    chainPrefix,
    ...(raw.prevResult === undefined ? {} : { prevResult: raw.prevResult }),
  };
  return problems.length > 0 ? { ok: false, problems } : { ok: true, value };
}

/** True when the pod is in an enrolled namespace or listed, and not excluded. */
export function isEnrolled(enroll: EnrollConfig, namespace: string | undefined, pod: string | undefined): boolean {
  const id = `${namespace ?? ''}/${pod ?? ''}`;
  if (enroll.excludePods.includes(id)) return false;
  return (namespace !== undefined && enroll.namespaces.includes(namespace)) || enroll.pods.includes(id);
}
