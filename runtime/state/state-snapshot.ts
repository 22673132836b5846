/**
 * An immutable, indexed view of workloads, services, policies and plugin attachments built from one config; the data
 * path's lookups (by IP, by VIP:port, by name) are O(1). A snapshot can also be derived from the previous one by a
 * workload change (a pod on another node moved): the indexes are shared and only the changed entries are copied.
 */
import type { NamespaceConfig, PolicyConfig, ServiceConfig, ServicePortConfig, WeftConfig, WorkloadConfig } from '../config/config-schema.js';
import { DEFAULT_CLUSTER_DOMAIN } from '../config/defaults.js';
import { attachmentFromAnnotations, resolveAttachment, type PluginAttachment } from './plugin-attachment.js';
import { functionKey, functionService, functionWorkload } from '../functions/function-entities.js';
import { LayeredMap } from './layered-map.js';
import { intern } from './string-pool.js';

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
  /** Workloads the selector picks (config order; a derived snapshot appends new ones); the picker skips unhealthy ones. */
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

/** Workloads added, replaced (same namespace/name) or removed, each uid at most once; optionally Services likewise. */
export interface WorkloadChange {
  upsert: readonly WorkloadConfig[];
  /** uids (`namespace/name`). */
  remove: readonly string[];
  /** Services added, replaced (same name and namespace) or removed (keys `name.namespace`), each key at most once. */
  services?: { upsert: readonly ServiceConfig[]; remove: readonly string[] };
}

export function spiffeId(trustDomain: string, namespace: string, serviceAccount: string): string {
  return `spiffe://${trustDomain}/ns/${namespace}/sa/${serviceAccount}`;
}

function matchesSelector(selector: Record<string, string>, labels: Record<string, string>): boolean {
  for (const k in selector) if (labels[k] !== selector[k]) return false;
  return true;
}

const identityNodeKey = (w: Workload): string => `${w.identity}\n${w.node ?? ''}`;
const selectorKey = (namespace: string, key: string, value: string): string => `${namespace}\0${key}\0${value}`;

/** Workloads derived from a config entry, with what the derivation depended on; entries are immutable once parsed. */
const derivedWorkloads = new WeakMap<WorkloadConfig, { trustDomain: string; node: string; nsAnnotations: Record<string, string> | undefined; workload: Workload }>();

/** Everything a snapshot holds; a derived snapshot shares most of it with its predecessor. */
interface Parts {
  byUid: LayeredMap<string, Workload>;
  byIp: LayeredMap<string, Workload>;
  /** `identity\nnode` → how many workloads run that identity on that node (the HBONE node check). */
  identityNodes: LayeredMap<string, number>;
  local: readonly Workload[];
  services: readonly Service[];
  serviceIndex: ReadonlyMap<string, number>;
  servicesByVipPort: LayeredMap<string, ServiceTarget>;
  servicesByName: LayeredMap<string, Service>;
  servicesByAddress: LayeredMap<string, Service>;
  /** Service keys by `namespace\0key\0value` of their selector's first label, and by namespace for `{}` selectors. */
  selecting: ReadonlyMap<string, readonly string[]>;
  selectingAll: ReadonlyMap<string, readonly string[]>;
  namespaces: ReadonlyMap<string, NamespaceConfig>;
  nsAttachment: (ns: string) => PluginAttachment | undefined;
}

function serviceEntries(s: Service): { names: [string, Service][]; vipPorts: [string, ServiceTarget][]; addresses: [string, Service][] } {
  const vipPorts: [string, ServiceTarget][] = [];
  for (const vip of s.addresses) for (const p of s.ports) vipPorts.push([`${vip}:${p.port}`, { service: s, port: p }]);
  return { names: [[s.key, s], [`${s.key}.svc`, s], [s.hostname, s]], vipPorts, addresses: s.addresses.map((a): [string, Service] => [a, s]) };
}

export class StateSnapshot {
  readonly config: WeftConfig;
  readonly version: number;
  /** Changes whenever the set of workloads (or any workload) changes; equal versions hold the same workloads. */
  readonly workloadsVersion: number;
  readonly policies: readonly PolicyConfig[];
  readonly #parts: Parts;
  #workloads: readonly Workload[] | undefined;

  constructor(config: WeftConfig, version: number, derived?: { parts: Parts; workloadsVersion: number }) {
    this.config = config;
    this.version = version;
    this.policies = config.policies;
    if (derived !== undefined) {
      this.#parts = derived.parts;
      this.workloadsVersion = derived.workloadsVersion;
      return;
    }
    this.workloadsVersion = version;
    this.#parts = StateSnapshot.#build(config);
  }

  static #build(config: WeftConfig): Parts {
    const namespaces = new Map(config.namespaces.map((ns) => [ns.name, ns]));
    const nsAttachments = new Map<string, PluginAttachment | undefined>();
    const nsAttachment = (ns: string): PluginAttachment | undefined => {
      if (nsAttachments.has(ns)) return nsAttachments.get(ns);
      const annotations = namespaces.get(ns)?.annotations;
      const a = annotations === undefined ? undefined : attachmentFromAnnotations(annotations, 'namespace');
      nsAttachments.set(ns, a);
      return a;
    };

    // Functions are services like any other, backed by a synthetic workload on this node (runtime/functions).
    const fnKeys = new Map(config.functions.map((f) => [`${f.namespace}/fn-${f.name}`, functionKey(f)]));
    const workloadConfigs = config.functions.length === 0 ? config.workloads : [...config.workloads, ...config.functions.map((f) => functionWorkload(f, config.node))];
    const serviceConfigs = config.functions.length === 0 ? config.services : [...config.services, ...config.functions.map(functionService)];
    const byUid = new Map<string, Workload>();
    const byIp = new Map<string, Workload>();
    const identityNodes = new Map<string, number>();
    const local: Workload[] = [];
    for (const w of workloadConfigs) {
      // A source that keeps unchanged entries as the same objects (Kubernetes) gets their indexed form back as well.
      const nsAnnotations = namespaces.get(w.namespace)?.annotations;
      const reused = derivedWorkloads.get(w);
      let workload: Workload;
      if (reused !== undefined && reused.trustDomain === config.trustDomain && reused.node === config.node && reused.nsAnnotations === nsAnnotations) workload = reused.workload;
      else {
        workload = makeWorkload(w, config, nsAttachment);
        if (fnKeys.has(workload.uid) && w.labels['weft.dev/function'] !== undefined) workload.function = fnKeys.get(workload.uid);
        derivedWorkloads.set(w, { trustDomain: config.trustDomain, node: config.node, nsAnnotations, workload });
      }
      byUid.set(workload.uid, workload);
      for (const ip of workload.addresses) byIp.set(ip, workload);
      const key = identityNodeKey(workload);
      identityNodes.set(key, (identityNodes.get(key) ?? 0) + 1);
      if (workload.local) local.push(workload);
    }

    // Workloads by namespace, then by the value of each label key a selector starts with: a selector scans only the
    // workloads carrying its first label, not every workload (10,000 Services × 150,000 Pods would be 1.5 billion checks).
    const firstKeys = new Set<string>();
    for (const s of serviceConfigs) {
      const k = s.selector === undefined ? undefined : Object.keys(s.selector)[0];
      if (k !== undefined) firstKeys.add(k);
    }
    const index = new Map<string, Workload[]>();
    for (const w of byUid.values()) {
      for (const k of firstKeys) {
        const v = w.labels[k];
        if (v === undefined) continue;
        const list = index.get(selectorKey(w.namespace, k, v));
        if (list === undefined) index.set(selectorKey(w.namespace, k, v), [w]);
        else list.push(w);
      }
    }
    const selecting = new Map<string, string[]>();
    const selectingAll = new Map<string, string[]>();
    const select = (namespace: string, selector: Record<string, string>): Workload[] => {
      const first = Object.keys(selector)[0];
      const candidates = first === undefined ? [...byUid.values()].filter((w) => w.namespace === namespace) : (index.get(selectorKey(namespace, first, selector[first] ?? '')) ?? []);
      return candidates.filter((w) => matchesSelector(selector, w.labels));
    };
    const fnServices = new Set(config.functions.map(functionKey));
    const services = serviceConfigs.map((s): Service => {
      const svc = makeService(s, s.selector === undefined ? [] : select(s.namespace, s.selector), nsAttachment, fnServices);
      const slot = selectorSlot(svc, selecting, selectingAll);
      if (slot !== undefined) {
        const list = slot.map.get(slot.at);
        if (list === undefined) slot.map.set(slot.at, [svc.key]);
        else list.push(svc.key);
      }
      return svc;
    });
    const serviceIndex = new Map<string, number>();
    const servicesByVipPort = new Map<string, ServiceTarget>();
    const servicesByName = new Map<string, Service>();
    const servicesByAddress = new Map<string, Service>();
    services.forEach((s, i) => {
      if (!serviceIndex.has(s.key)) serviceIndex.set(s.key, i);
      const e = serviceEntries(s);
      for (const [k, v] of e.vipPorts) servicesByVipPort.set(k, v);
      for (const [k, v] of e.names) servicesByName.set(k, v);
      for (const [k, v] of e.addresses) if (!servicesByAddress.has(k)) servicesByAddress.set(k, v);
    });
    return {
      byUid: new LayeredMap(byUid),
      byIp: new LayeredMap(byIp),
      identityNodes: new LayeredMap(identityNodes),
      local,
      services,
      serviceIndex,
      servicesByVipPort: new LayeredMap(servicesByVipPort),
      servicesByName: new LayeredMap(servicesByName),
      servicesByAddress: new LayeredMap(servicesByAddress),
      selecting,
      selectingAll,
      namespaces,
      nsAttachment,
    };
  }

  /**
   * The snapshot `previous` would be with `change` applied and nothing else: same config otherwise (services, namespaces,
   * plugins, policies), the workload indexes patched and only the Services selecting a changed workload rebuilt. The
   * result equals a snapshot built from scratch from the changed config, except that a Service's new endpoints come last.
   */
  static derive(previous: StateSnapshot, change: WorkloadChange, version: number): StateSnapshot {
    const p = previous.#parts;
    const config = previous.config;
    const pairs: { uid: string; old: Workload | undefined; next: Workload | undefined }[] = [];
    for (const uid of change.remove) pairs.push({ uid, old: p.byUid.get(uid), next: undefined });
    for (const w of change.upsert) {
      const next = makeWorkload(w, config, p.nsAttachment);
      pairs.push({ uid: next.uid, old: p.byUid.get(next.uid), next });
    }
    const uidSet: [string, Workload][] = [];
    const uidRemove: string[] = [];
    const ips = new Map<string, Workload | null>();
    const counts = new Map<string, number>();
    const count = (w: Workload, d: number): void => {
      const k = identityNodeKey(w);
      counts.set(k, (counts.get(k) ?? p.identityNodes.get(k) ?? 0) + d);
    };
    let localChanged = false;
    for (const { uid, old, next } of pairs) {
      if (old !== undefined) {
        for (const ip of old.addresses) if ((ips.has(ip) ? ips.get(ip) : p.byIp.get(ip)) === old) ips.set(ip, null);
        count(old, -1);
        localChanged ||= old.local;
      }
      if (next === undefined) {
        if (old !== undefined) uidRemove.push(uid);
        continue;
      }
      uidSet.push([uid, next]);
      for (const ip of next.addresses) ips.set(ip, next);
      count(next, 1);
      localChanged ||= next.local;
    }
    const changed = new Set(pairs.map((x) => x.uid));
    const parts: Parts = {
      ...p,
      byUid: p.byUid.with(uidSet, uidRemove),
      byIp: p.byIp.with(
        [...ips].flatMap(([ip, w]): [string, Workload][] => (w === null ? [] : [[ip, w]])),
        [...ips].flatMap(([ip, w]) => (w === null ? [ip] : [])),
      ),
      identityNodes: p.identityNodes.with(
        [...counts].filter(([, n]) => n > 0),
        [...counts].flatMap(([k, n]) => (n > 0 ? [] : [k])),
      ),
      local: localChanged ? [...p.local.filter((w) => !changed.has(w.uid)), ...uidSet.map(([, w]) => w).filter((w) => w.local)] : p.local,
    };
    StateSnapshot.#patchServices(parts, pairs);
    let services: ServiceConfig[] | undefined;
    if (change.services !== undefined && change.services.upsert.length + change.services.remove.length > 0) {
      StateSnapshot.#replaceServices(parts, change.services);
      services = withServices(config.services, change.services);
    }
    const snapshot: StateSnapshot = new StateSnapshot(liveWorkloadsConfig(config, () => snapshot, services), version, { parts, workloadsVersion: version });
    return snapshot;
  }

  /**
   * Replaces, adds and removes Services (after the workload change): their index entries move, and each new one's
   * endpoints are the workloads its selector picks, found in one pass over the workloads for the whole change.
   */
  static #replaceServices(parts: Parts, change: NonNullable<WorkloadChange['services']>): void {
    const services: (Service | undefined)[] = [...parts.services];
    // Lists are replaced, never changed in place: the previous snapshot shares the rest.
    const selecting = new Map(parts.selecting);
    const selectingAll = new Map(parts.selectingAll);
    const drop = { names: [] as string[], vipPorts: [] as string[], addresses: [] as string[] };
    const gone = new Set([...change.remove, ...change.upsert.map((s) => `${s.name}.${s.namespace}`)]);
    for (const key of gone) {
      const at = parts.serviceIndex.get(key);
      const old = at === undefined ? undefined : services[at];
      if (old === undefined || at === undefined) continue;
      const e = serviceEntries(old);
      drop.names.push(...e.names.map(([k]) => k));
      drop.vipPorts.push(...e.vipPorts.filter(([k]) => parts.servicesByVipPort.get(k)?.service.key === key).map(([k]) => k));
      drop.addresses.push(...e.addresses.filter(([a]) => parts.servicesByAddress.get(a)?.key === key).map(([a]) => a));
      const slot = selectorSlot(old, selecting, selectingAll);
      if (slot !== undefined) slot.map.set(slot.at, (slot.map.get(slot.at) ?? []).filter((k) => k !== key));
      if (change.remove.includes(key)) services[at] = undefined;
    }
    // Endpoints for every upserted Service with a selector, in one pass over the workloads.
    const fresh = change.upsert.map((s) => makeService(s, [], parts.nsAttachment, new Set()));
    const byNamespace = new Map<string, Service[]>();
    for (const svc of fresh) if (svc.selector !== undefined) byNamespace.set(svc.namespace, [...(byNamespace.get(svc.namespace) ?? []), svc]);
    if (byNamespace.size > 0) {
      parts.byUid.forEach((w) => {
        const candidates = byNamespace.get(w.namespace);
        if (candidates !== undefined) for (const svc of candidates) if (matchesSelector(svc.selector ?? {}, w.labels)) svc.endpoints.push(w);
      });
    }
    const names: [string, Service][] = [];
    const vipPorts: [string, ServiceTarget][] = [];
    const addresses: [string, Service][] = [];
    for (const svc of fresh) {
      const at = parts.serviceIndex.get(svc.key);
      if (at === undefined) services.push(svc);
      else services[at] = svc;
      const slot = selectorSlot(svc, selecting, selectingAll);
      if (slot !== undefined) slot.map.set(slot.at, [...(slot.map.get(slot.at) ?? []), svc.key]);
      const e = serviceEntries(svc);
      names.push(...e.names);
      vipPorts.push(...e.vipPorts);
      addresses.push(...e.addresses.filter(([a]) => !parts.servicesByAddress.has(a) || drop.addresses.includes(a)));
    }
    const kept = services.filter((x): x is Service => x !== undefined);
    const serviceIndex = new Map<string, number>();
    kept.forEach((svc, i) => {
      if (!serviceIndex.has(svc.key)) serviceIndex.set(svc.key, i);
    });
    const keys = (xs: [string, unknown][]): Set<string> => new Set(xs.map(([k]) => k));
    const setNames = keys(names);
    const setVips = keys(vipPorts);
    const setAddresses = keys(addresses);
    parts.services = kept;
    parts.serviceIndex = serviceIndex;
    parts.selecting = selecting;
    parts.selectingAll = selectingAll;
    parts.servicesByName = parts.servicesByName.with(names, drop.names.filter((k) => !setNames.has(k)));
    parts.servicesByVipPort = parts.servicesByVipPort.with(vipPorts, drop.vipPorts.filter((k) => !setVips.has(k)));
    parts.servicesByAddress = parts.servicesByAddress.with(addresses, drop.addresses.filter((k) => !setAddresses.has(k)));
  }

  /** Rebuilds the endpoints of the Services that select a changed workload (before or after the change). */
  static #patchServices(parts: Parts, pairs: { uid: string; old: Workload | undefined; next: Workload | undefined }[]): void {
    const affected = new Map<string, { uid: string; next: Workload | undefined }[]>();
    const note = (w: Workload, pair: { uid: string; next: Workload | undefined }): void => {
      const keys = [...(parts.selectingAll.get(w.namespace) ?? [])];
      for (const k in w.labels) keys.push(...(parts.selecting.get(selectorKey(w.namespace, k, w.labels[k] ?? '')) ?? []));
      for (const key of keys) {
        const list = affected.get(key);
        if (list === undefined) affected.set(key, [pair]);
        else if (!list.includes(pair)) list.push(pair);
      }
    };
    for (const pair of pairs) {
      if (pair.old !== undefined) note(pair.old, pair);
      if (pair.next !== undefined) note(pair.next, pair);
    }
    if (affected.size === 0) return;
    const services = [...parts.services];
    const names: [string, Service][] = [];
    const vipPorts: [string, ServiceTarget][] = [];
    const addresses: [string, Service][] = [];
    for (const [key, changes] of affected) {
      const at = parts.serviceIndex.get(key);
      const svc = at === undefined ? undefined : services[at];
      if (at === undefined || svc === undefined || svc.selector === undefined) continue;
      const endpoints = [...svc.endpoints];
      for (const { uid, next } of changes) {
        const i = endpoints.findIndex((e) => e.uid === uid);
        const selected = next !== undefined && next.namespace === svc.namespace && matchesSelector(svc.selector, next.labels);
        if (selected && i >= 0) endpoints[i] = next;
        else if (selected) endpoints.push(next);
        else if (i >= 0) endpoints.splice(i, 1);
      }
      const updated: Service = { ...svc, endpoints };
      services[at] = updated;
      const e = serviceEntries(updated);
      names.push(...e.names);
      vipPorts.push(...e.vipPorts);
      addresses.push(...e.addresses.filter(([a]) => parts.servicesByAddress.get(a)?.key === key));
    }
    parts.services = services;
    parts.servicesByName = parts.servicesByName.with(names);
    parts.servicesByVipPort = parts.servicesByVipPort.with(vipPorts);
    parts.servicesByAddress = parts.servicesByAddress.with(addresses);
  }

  /** Every workload (materialized on first use; lookups never need it). */
  get workloads(): readonly Workload[] {
    if (this.#workloads === undefined) {
      const all: Workload[] = [];
      this.#parts.byUid.forEach((w) => all.push(w));
      this.#workloads = all;
    }
    return this.#workloads;
  }

  get services(): readonly Service[] {
    return this.#parts.services;
  }

  workloadByIp(ip: string): Workload | undefined {
    return this.#parts.byIp.get(ip);
  }

  workloadByUid(uid: string): Workload | undefined {
    return this.#parts.byUid.get(uid);
  }

  /** Whether some workload on `node` runs as `identity` (a peer's certificate is only as good as its node). */
  hostsIdentityOnNode(identity: string, node: string | undefined): boolean {
    return (this.#parts.identityNodes.get(`${identity}\n${node ?? ''}`) ?? 0) > 0;
  }

  serviceByVip(ip: string, port: number): ServiceTarget | undefined {
    return this.#parts.servicesByVipPort.get(`${ip}:${port}`);
  }

  /** `reviews.default`, `reviews.default.svc` or `reviews.default.svc.cluster.local`. */
  serviceByName(name: string): Service | undefined {
    return this.#parts.servicesByName.get(name.toLowerCase().replace(/\.$/, ''));
  }

  /** A service by name or by any VIP (any port), as `localPorts` and the explicit proxy address it. */
  serviceByRef(ref: string): Service | undefined {
    return this.serviceByName(ref) ?? this.#parts.servicesByAddress.get(ref);
  }

  namespace(name: string): NamespaceConfig | undefined {
    return this.#parts.namespaces.get(name);
  }

  localWorkloads(): readonly Workload[] {
    return this.#parts.local;
  }
}

function makeService(s: ServiceConfig, endpoints: Workload[], nsAttachment: (ns: string) => PluginAttachment | undefined, fnServices: ReadonlySet<string>): Service {
  const key = `${s.name}.${s.namespace}`;
  return {
    ...s,
    key,
    hostname: `${key}.${DEFAULT_CLUSTER_DOMAIN}`,
    endpoints,
    attachment: resolveAttachment(attachmentFromAnnotations(s.annotations, 'service'), nsAttachment(s.namespace)),
    ...(fnServices.has(key) && s.selector?.['weft.dev/function'] !== undefined ? { function: key } : {}),
  };
}

/** Where a Service is listed among those a workload change may affect: by its selector's first label, or by namespace for `{}`. */
function selectorSlot<M>(s: ServiceConfig, selecting: Map<string, M>, selectingAll: Map<string, M>): { map: Map<string, M>; at: string } | undefined {
  if (s.selector === undefined) return undefined;
  const first = Object.keys(s.selector)[0];
  return first === undefined ? { map: selectingAll, at: s.namespace } : { map: selecting, at: selectorKey(s.namespace, first, s.selector[first] ?? '') };
}

/** A config's services with a change applied: replaced in place, removed, new ones last. */
function withServices(services: readonly ServiceConfig[], change: NonNullable<WorkloadChange['services']>): ServiceConfig[] {
  const byKey = new Map(change.upsert.map((s) => [`${s.name}.${s.namespace}`, s]));
  const removed = new Set(change.remove);
  const out: ServiceConfig[] = [];
  for (const s of services) {
    const key = `${s.name}.${s.namespace}`;
    if (removed.has(key)) continue;
    const next = byKey.get(key);
    out.push(next ?? s);
    byKey.delete(key);
  }
  return [...out, ...byKey.values()];
}

function makeWorkload(w: WorkloadConfig, config: WeftConfig, nsAttachment: (ns: string) => PluginAttachment | undefined): Workload {
  return {
    ...w,
    uid: `${w.namespace}/${w.name}`,
    identity: intern(spiffeId(config.trustDomain, w.namespace, w.serviceAccount)),
    local: w.node === undefined || w.node === config.node,
    attachment: resolveAttachment(attachmentFromAnnotations(w.annotations, 'workload'), nsAttachment(w.namespace)),
  };
}

/** The config a derived snapshot serves: the previous one (with `services` if they changed), its `workloads` read from the snapshot when first asked for. */
function liveWorkloadsConfig(config: WeftConfig, snapshot: () => StateSnapshot, services?: ServiceConfig[]): WeftConfig {
  let workloads: WorkloadConfig[] | undefined;
  // Copies the descriptors, not the values: the previous config's own `workloads` may be such a getter, and reading it would materialize it.
  const out = Object.create(Object.getPrototypeOf(config) as object, Object.getOwnPropertyDescriptors(config)) as WeftConfig;
  Object.defineProperty(out, 'workloads', {
    enumerable: true,
    configurable: true,
    get: () => (workloads ??= snapshot().workloads.filter((w) => w.function === undefined)),
  });
  if (services !== undefined) Object.defineProperty(out, 'services', { enumerable: true, configurable: true, writable: false, value: services });
  return out;
}
