/** A Pod to a weft workload, checked with the same rules as a `workloads:` entry of weft.yaml; the common case (every field already well-formed) skips the schema parser, which costs seconds at 150,000 pods. */
import { isIP } from 'node:net';
import { workloadSchema, type WorkloadConfig } from '../config/config-schema.js';
import type { SlimPod } from './kube-objects.js';

/** config-schema's DNS-1123 `name` rule. */
const NAME = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;

function stringMap(m: Record<string, unknown>): boolean {
  for (const k in m) if (typeof m[k] !== 'string') return false;
  return true;
}

/** True when `workloadSchema` would accept `w` unchanged (every key present, no defaults to fill). */
function wellFormed(w: WorkloadConfig): boolean {
  return NAME.test(w.name) && NAME.test(w.namespace) && NAME.test(w.serviceAccount) && w.addresses.length > 0 && w.addresses.every((a) => isIP(a) !== 0) && stringMap(w.labels) && stringMap(w.annotations);
}

export type PodMapping = { ok: true; value: WorkloadConfig } | { ok: false; reason: string } | undefined;

/** Terminal, unscheduled and host-network pods are no addressable mesh workloads (undefined). */
export function isMeshWorkload(pod: SlimPod): boolean {
  return pod.ips.length > 0 && !pod.hostNetwork && pod.phase !== 'Succeeded' && pod.phase !== 'Failed';
}

export function mapPod(pod: SlimPod, enrolled: boolean, annotations: Record<string, string>): PodMapping {
  if (!isMeshWorkload(pod)) return undefined;
  const w: WorkloadConfig = {
    name: pod.name,
    namespace: pod.namespace ?? 'default',
    serviceAccount: pod.serviceAccount,
    addresses: pod.ips,
    ...(pod.nodeName === undefined ? {} : { node: pod.nodeName }),
    protocol: enrolled ? 'HBONE' : 'TCP',
    status: pod.ready ? 'Healthy' : 'Unhealthy',
    labels: pod.labels,
    annotations,
  };
  if (wellFormed(w)) return { ok: true, value: w };
  const parsed = workloadSchema.safeParse(w);
  return parsed.success ? { ok: true, value: parsed.data } : { ok: false, reason: parsed.error.issues.map((i) => `${i.path.map(String).join('.')}: ${i.message}`).join('; ') };
}
