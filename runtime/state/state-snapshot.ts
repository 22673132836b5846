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
    const nsAttachment = (ns: string): PluginAttachment | undefined => {
      const annotations = this.#namespaces.get(ns)?.annotations;
      return annotations === undefined ? undefined : attachmentFromAnnotations(annotations, 'namespace');
    };

    // Functions are services like any other, backed by a synthetic workload on this node (runtime/functions).
    const fnKeys = new Map(config.functions.map((f) => [`${f.namespace}/fn-${f.name}`, functionKey(f)]));
    const workloadConfigs = config.functions.length === 0 ? config.workloads : [...config.workloads, ...config.functions.map((f) => functionWorkload(f, config.node))];
    const serviceConfigs = config.functions.length === 0 ? config.services : [...config.services, ...config.functions.map(functionService)];
    this.workloads = workloadConfigs.map((w) => ({
      ...w,
      uid: `${w.namespace}/${w.name}`,
      identity: spiffeId(config.trustDomain, w.namespace, w.serviceAccount),
      local: w.node === undefined || w.node === config.node,
      attachment: resolveAttachment(attachmentFromAnnotations(w.annotations, 'workload'), nsAttachment(w.namespace)),
      ...(fnKeys.has(`${w.namespace}/${w.name}`) && w.labels['weft.dev/function'] !== undefined ? { function: fnKeys.get(`${w.namespace}/${w.name}`) } : {}),
    }));
    for (const w of this.workloads) for (const ip of w.addresses) this.#workloadsByIp.set(ip, w);

    const fnServices = new Set(config.functions.map(functionKey));
    this.services = serviceConfigs.map((s) => {
      const key = `${s.name}.${s.namespace}`;
      const endpoints = s.selector === undefined ? [] : this.workloads.filter((w) => w.namespace === s.namespace && matchesSelector(s.selector ?? {}, w.labels));
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
