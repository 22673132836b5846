/** weft-cni's entry in the chained conflist, decoded by hand into valid-or-problems (no schema library: every pod sandbox starts this process, and its start-up time is ADD's latency). */

export const DEFAULT_STATE_DIR = '/var/run/weft-cni';
export const DEFAULT_LOCK_TIMEOUT_MS = 60_000;

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
  const value: PluginConfig = {
    cniVersion: text('cniVersion'),
    name: text('name'),
    type: text('type'),
    stateDir: text('stateDir', DEFAULT_STATE_DIR),
    enroll,
    lockTimeoutMs: typeof lock === 'number' ? lock : DEFAULT_LOCK_TIMEOUT_MS,
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
