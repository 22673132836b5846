/** An immutable, indexed view of workloads, services, policies and plugin attachments built from one config; the data path's lookups (by IP, by VIP:port, by name) are O(1). */
import type { NamespaceConfig, PolicyConfig, ServiceConfig, ServicePortConfig, WeftConfig, WorkloadConfig } from '../config/config-schema.js';
import { DEFAULT_CLUSTER_DOMAIN } from '../config/defaults.js';
import { attachmentFromAnnotations, resolveAttachment, type PluginAttachment } from './plugin-attachment.js';
import { functionKey, functionService, functionWorkload } from '../functions/function-entities.js';

export interface Workload extends WorkloadConfig {
  /** `namespace/name`, unique. */
  uid: string;
  /** SPIFFE ID `spiffe://<trustDomain>/ns/<ns>/sa/<sa>`. */
  identity: string;
  /** True when the workload runs on this node. */
  local: boolean;
  /** Plugins attached at workload or namespace level (nearest wins). */
  attachment: PluginAttachment | undefined;
  /** Set on a function's synthetic workload: the function's key (`name.namespace`). */
  function?: string;
}

export interface Service extends ServiceConfig {
  /** `name.namespace`. */
  key: string;
  /** `name.namespace.svc.cluster.local`. */
  hostname: string;
  /** Workloads the selector picks, in config order; the picker skips unhealthy ones. */
  endpoints: Workload[];
  /** Plugins attached at service or namespace level (nearest wins). */
  attachment: PluginAttachment | undefined;
  /** Set on a function's service: the function's key (`name.namespace`). */
  function?: string;
}

export interface ServiceTarget {
  service: Service;
  port: ServicePortConfig;
}

export function spiffeId(trustDomain: string, namespace: string, serviceAccount: string): string {
  return `spiffe://${trustDomain}/ns/${namespace}/sa/${serviceAccount}`;
}

function matchesSelector(selector: Record<string, string>, labels: Record<string, string>): boolean {
  for (const [k, v] of Object.entries(selector)) if (labels[k] !== v) return false;
  return true;
}

/** Workloads derived from a config entry, with what the derivation depended on; entries are immutable once parsed. */
const derivedWorkloads = new WeakMap<WorkloadConfig, { trustDomain: string; node: string; nsAnnotations: Record<string, string> | undefined; workload: Workload }>();

export class StateSnapshot {
  readonly config: WeftConfig;
  readonly version: number;
  readonly workloads: readonly Workload[];
  readonly services: readonly Service[];
  readonly policies: readonly PolicyConfig[];
  readonly #workloadsByIp = new Map<string, Workload>();
  readonly #servicesByVipPort = new Map<string, ServiceTarget>();
  readonly #servicesByName = new Map<string, Service>();
  readonly #namespaces = new Map<string, NamespaceConfig>();

  constructor(config: WeftConfig, version: number) {
    this.config = config;
    this.version = version;
    this.policies = config.policies;
    for (const ns of config.namespaces) this.#namespaces.set(ns.name, ns);
    const nsAttachments = new Map<string, PluginAttachment | undefined>();
    const nsAttachment = (ns: string): PluginAttachment | undefined => {
      if (nsAttachments.has(ns)) return nsAttachments.get(ns);
      const annotations = this.#namespaces.get(ns)?.annotations;
      const a = annotations === undefined ? undefined : attachmentFromAnnotations(annotations, 'namespace');
      nsAttachments.set(ns, a);
      return a;
    };

    // Functions are services like any other, backed by a synthetic workload on this node (runtime/functions).
    const fnKeys = new Map(config.functions.map((f) => [`${f.namespace}/fn-${f.name}`, functionKey(f)]));
    const workloadConfigs = config.functions.length === 0 ? config.workloads : [...config.workloads, ...config.functions.map((f) => functionWorkload(f, config.node))];
    const serviceConfigs = config.functions.length === 0 ? config.services : [...config.services, ...config.functions.map(functionService)];
    this.workloads = workloadConfigs.map((w) => {
      // A source that keeps unchanged entries as the same objects (Kubernetes) gets their indexed form back as well.
      const nsAnnotations = this.#namespaces.get(w.namespace)?.annotations;
      const reused = derivedWorkloads.get(w);
      if (reused !== undefined && reused.trustDomain === config.trustDomain && reused.node === config.node && reused.nsAnnotations === nsAnnotations) return reused.workload;
      const workload: Workload = {
        ...w,
        uid: `${w.namespace}/${w.name}`,
        identity: spiffeId(config.trustDomain, w.namespace, w.serviceAccount),
        local: w.node === undefined || w.node === config.node,
        attachment: resolveAttachment(attachmentFromAnnotations(w.annotations, 'workload'), nsAttachment(w.namespace)),
        ...(fnKeys.has(`${w.namespace}/${w.name}`) && w.labels['weft.dev/function'] !== undefined ? { function: fnKeys.get(`${w.namespace}/${w.name}`) } : {}),
      };
      derivedWorkloads.set(w, { trustDomain: config.trustDomain, node: config.node, nsAnnotations, workload });
      return workload;
    });
    for (const w of this.workloads) for (const ip of w.addresses) this.#workloadsByIp.set(ip, w);

    // Workloads by namespace, then by the value of each label key a selector starts with: a selector scans only the
    // workloads carrying its first label, not every workload (10,000 Services × 150,000 Pods would be 1.5 billion checks).
    const firstKeys = new Set<string>();
    for (const s of serviceConfigs) {
      const k = s.selector === undefined ? undefined : Object.keys(s.selector)[0];
      if (k !== undefined) firstKeys.add(k);
    }
    const index = new Map<string, Map<string, Map<string, Workload[]>>>();
    for (const w of this.workloads) {
      for (const k of firstKeys) {
        const v = w.labels[k];
        if (v === undefined) continue;
        let byKey = index.get(w.namespace);
        if (byKey === undefined) index.set(w.namespace, (byKey = new Map<string, Map<string, Workload[]>>()));
        let byValue = byKey.get(k);
        if (byValue === undefined) byKey.set(k, (byValue = new Map<string, Workload[]>()));
        const list = byValue.get(v);
        if (list === undefined) byValue.set(v, [w]);
        else list.push(w);
      }
    }
    const select = (namespace: string, selector: Record<string, string>): Workload[] => {
      const first = Object.keys(selector)[0];
      const candidates = first === undefined ? this.workloads.filter((w) => w.namespace === namespace) : (index.get(namespace)?.get(first)?.get(selector[first] ?? '') ?? []);
      return candidates.filter((w) => matchesSelector(selector, w.labels));
    };
    const fnServices = new Set(config.functions.map(functionKey));
    this.services = serviceConfigs.map((s) => {
      const key = `${s.name}.${s.namespace}`;
      const endpoints = s.selector === undefined ? [] : select(s.namespace, s.selector);
      return {
        ...s,
        key,
        hostname: `${key}.${DEFAULT_CLUSTER_DOMAIN}`,
        endpoints,
        attachment: resolveAttachment(attachmentFromAnnotations(s.annotations, 'service'), nsAttachment(s.namespace)),
        ...(fnServices.has(key) && s.selector?.['weft.dev/function'] !== undefined ? { function: key } : {}),
      };
    });
    for (const s of this.services) {
      for (const vip of s.addresses) for (const p of s.ports) this.#servicesByVipPort.set(`${vip}:${p.port}`, { service: s, port: p });
      this.#servicesByName.set(s.key, s);
      this.#servicesByName.set(`${s.key}.svc`, s);
      this.#servicesByName.set(s.hostname, s);
    }
  }

  workloadByIp(ip: string): Workload | undefined {
    return this.#workloadsByIp.get(ip);
  }

  serviceByVip(ip: string, port: number): ServiceTarget | undefined {
    return this.#servicesByVipPort.get(`${ip}:${port}`);
  }

  /** `reviews.default`, `reviews.default.svc` or `reviews.default.svc.cluster.local`. */
  serviceByName(name: string): Service | undefined {
    return this.#servicesByName.get(name.toLowerCase().replace(/\.$/, ''));
  }

  /** A service by name or by any VIP (any port), as `localPorts` and the explicit proxy address it. */
  serviceByRef(ref: string): Service | undefined {
    return this.serviceByName(ref) ?? this.services.find((s) => s.addresses.includes(ref));
  }

  namespace(name: string): NamespaceConfig | undefined {
    return this.#namespaces.get(name);
  }

  localWorkloads(): Workload[] {
    return this.workloads.filter((w) => w.local);
  }
}
