/**
 * The Kubernetes objects weft holds (fed by the reflectors) and their translation into weft's model: Pods to workloads,
 * Services, Namespaces, WasmPlugins to plugins, AuthorizationPolicies to policies. Each object is checked on its own; a bad
 * one is listed as a problem and its last good version (if any) stands in for it, so it never blocks the rest.
 */
import { namespaceSchema, serviceSchema, type NamespaceConfig, type PluginConfig, type PolicyConfig, type ServiceConfig, type WorkloadConfig } from '../config/config-schema.js';
import { ROOT_NAMESPACE } from '../authz/authz-policy.js';
import { PLUGINS_ANNOTATION, PLUGIN_CONFIG_ANNOTATION_PREFIX, parsePluginList } from '../state/plugin-attachment.js';
import { isEnrolled } from './kube-enrollment.js';
import type { SlimCustom, SlimEndpointSlice, SlimNamespace, SlimPod, SlimService } from './kube-objects.js';
import type { ReflectorHandler, Stripped } from './kube-reflector.js';
import { mapAuthorizationPolicy } from './authorization-policy-mapping.js';
import { mapWasmPlugin, modelPluginName, type MappedWasmPlugin } from './wasm-plugin-mapping.js';
import { mapPod } from './pod-workload-mapping.js';
import { SERVICE_NAME_LABEL, sliceWorkloads } from './endpoint-slice-mapping.js';
import { keyOf } from './kube-reflector.js';

export const KINDS = { pods: 'Pod', endpointslices: 'EndpointSlice', services: 'Service', namespaces: 'Namespace', wasmplugins: 'WasmPlugin', authorizationpolicies: 'AuthorizationPolicy' } as const;
export type ModelResource = keyof typeof KINDS;

export interface ObjectRef {
  resource: ModelResource;
  namespace: string | undefined;
  name: string;
  resourceVersion: string;
}

export interface ObjectProblem extends ObjectRef {
  reason: string;
  /** True when an earlier good version of the object is serving instead. */
  lastGoodServing: boolean;
}

/** The part of weft's model that comes from the cluster, with where each entry came from. */
export interface KubeMesh {
  namespaces: NamespaceConfig[];
  workloads: WorkloadConfig[];
  services: ServiceConfig[];
  plugins: PluginConfig[];
  policies: PolicyConfig[];
  /** Parallel to each list above: the object each entry came from. */
  origins: { namespaces: ObjectRef[]; workloads: ObjectRef[]; services: ObjectRef[]; plugins: ObjectRef[]; policies: ObjectRef[] };
  problems: ObjectProblem[];
}

type Mapped<T> = { ok: true; value: T } | { ok: false; reason: string };

interface Cached<T> {
  source: Stripped;
  /** The epochs (global, and the object's namespace) the translation was made at; `rejected` pins a late rejection. */
  epoch: string;
  result: Mapped<T> | undefined;
}

/** What pod changes since the last applied snapshot amount to, when they can be applied without a rebuild. */
export interface PodDelta {
  upsert: WorkloadConfig[];
  /** Workload uids (`namespace/name`). */
  remove: string[];
  /** Pod keys whose served entry changes, with their new entry (undefined: removed). */
  served: Map<string, { workload: WorkloadConfig; ref: ObjectRef } | undefined>;
  /** Problems of the changed pods (replacing any earlier ones of those pods). */
  problems: ObjectProblem[];
  pods: Set<string>;
}

/** What Service changes since the last applied snapshot amount to, when they can be applied without a rebuild. */
export interface ServiceDelta {
  upsert: ServiceConfig[];
  /** Service keys (`name.namespace`). */
  remove: string[];
  /** Service object keys whose served entry changes, with their new entry (undefined: removed). */
  served: Map<string, { service: ServiceConfig; ref: ObjectRef } | undefined>;
  problems: ObjectProblem[];
  services: Set<string>;
}

export type ServiceDeltaResult = { ok: true; delta: ServiceDelta } | { ok: false; reason: string };

/** A pod change the snapshot cannot take incrementally: it touches plugin instances, the L7 path or this node's workloads. */
export type PodDeltaResult = { ok: true; delta: PodDelta } | { ok: false; reason: string };

interface PluginIndex {
  wasm: { namespace: string; value: MappedWasmPlugin; ref: ObjectRef }[];
  names: Set<string>;
  selectorPlugins: { namespace: string; value: MappedWasmPlugin }[];
  servicePlugins: Map<string, string[]>;
  problems: ObjectProblem[];
}

function matches(selector: Record<string, string>, labels: Record<string, string>): boolean {
  for (const k in selector) if (labels[k] !== selector[k]) return false;
  return true;
}

function refOf(resource: ModelResource, o: Stripped): ObjectRef {
  return { resource, namespace: o.namespace, name: o.name, resourceVersion: o.resourceVersion };
}

function firstIssue(issues: { path: PropertyKey[]; message: string }[]): string {
  return issues.map((i) => `${i.path.map(String).join('.')}: ${i.message}`).join('; ');
}

/** Istio's port-name convention (`http-web`, `grpc`) when a Service port has no appProtocol. */
function appProtocolOf(p: SlimService['ports'][number]): 'tcp' | 'http' | 'http2' | 'grpc' | undefined {
  const explicit = p.appProtocol?.toLowerCase();
  const table: Record<string, 'tcp' | 'http' | 'http2' | 'grpc'> = { tcp: 'tcp', http: 'http', http2: 'http2', 'kubernetes.io/h2c': 'http2', grpc: 'grpc', 'grpc-web': 'http' };
  if (explicit !== undefined) return table[explicit];
  const prefix = p.name?.toLowerCase().split('-')[0];
  return prefix === undefined ? undefined : table[prefix];
}

export class KubeMeshModel implements ReflectorHandler<Stripped> {
  readonly pods = new Map<string, SlimPod>();
  readonly endpointSlices = new Map<string, SlimEndpointSlice>();
  readonly services = new Map<string, SlimService>();
  readonly namespaces = new Map<string, SlimNamespace>();
  readonly wasmPlugins = new Map<string, SlimCustom>();
  readonly authorizationPolicies = new Map<string, SlimCustom>();
  readonly #trustDomain: string;
  readonly #onChange: (resource: string) => void;
  readonly #onSynced: (resource: string) => void;
  /**
   * Translations depend on the namespace (enrollment) and the plugins of the object's namespace (names, selectors,
   * targetRefs): a change there bumps that namespace's epoch; the root namespace's plugins and the file's bump all.
   */
  #globalEpoch = 0;
  readonly #nsEpoch = new Map<string, number>();
  /** Per resource, by object key: the last translation and the last good one. */
  readonly #cache = new Map<string, Map<string, Cached<unknown>>>();
  readonly #lastGood = new Map<string, Map<string, unknown>>();
  #filePlugins = new Set<string>();
  #plugins: PluginIndex | undefined;
  /** Pod keys by namespace, and Services with a named targetPort by namespace (they depend on the pods they select). */
  readonly #podsByNamespace = new Map<string, Set<string>>();
  readonly #namedPortServices = new Map<string, Set<string>>();
  /** Pods and Services changed since the last applied snapshot; anything else changed means a full rebuild. */
  readonly #dirtyPods = new Set<string>();
  readonly #dirtyServices = new Set<string>();
  #dirtyOther = true;
  /** What the serving snapshot holds for each pod and each Service. */
  readonly #served = new Map<string, { workload: WorkloadConfig; ref: ObjectRef }>();
  readonly #servedServices = new Map<string, { service: ServiceConfig; ref: ObjectRef }>();
  /** Resources listed once (pod translations wait for namespaces and WasmPlugins). */
  readonly #listed = new Set<string>();

  constructor(opts: { trustDomain: string; onChange?: (resource: string) => void; onSynced?: (resource: string) => void }) {
    this.#trustDomain = opts.trustDomain;
    this.#onChange = opts.onChange ?? (() => undefined);
    this.#onSynced = opts.onSynced ?? (() => undefined);
  }

  /** File-defined plugins a cluster annotation may also name (global names). */
  get filePlugins(): Set<string> {
    return this.#filePlugins;
  }

  set filePlugins(names: Set<string>) {
    if (names.size === this.#filePlugins.size && [...names].every((n) => this.#filePlugins.has(n))) return;
    this.#filePlugins = names;
    this.#globalEpoch++;
    this.#dirtyOther = true;
  }

  #map(resource: string): Map<string, Stripped> {
    const maps: Record<string, Map<string, Stripped>> = { pods: this.pods, endpointslices: this.endpointSlices, services: this.services, namespaces: this.namespaces, wasmplugins: this.wasmPlugins, authorizationpolicies: this.authorizationPolicies };
    const m = maps[resource];
    if (m === undefined) throw new Error(`no model for ${resource}`);
    return m;
  }

  #bump(namespace: string | undefined): void {
    if (namespace === undefined || namespace === ROOT_NAMESPACE) this.#globalEpoch++;
    else this.#nsEpoch.set(namespace, (this.#nsEpoch.get(namespace) ?? 0) + 1);
  }

  #index(resource: string, key: string, obj: Stripped | undefined, old: Stripped | undefined): void {
    const namespace = (obj ?? old)?.namespace ?? 'default';
    if (resource === 'pods') {
      let keys = this.#podsByNamespace.get(namespace);
      if (keys === undefined) this.#podsByNamespace.set(namespace, (keys = new Set()));
      if (obj === undefined) keys.delete(key);
      else keys.add(key);
    } else if (resource === 'services') {
      let keys = this.#namedPortServices.get(namespace);
      if (keys === undefined) this.#namedPortServices.set(namespace, (keys = new Set()));
      if (obj !== undefined && (obj as SlimService).ports.some((p) => typeof p.targetPort === 'string')) keys.add(key);
      else keys.delete(key);
    } else if (resource === 'namespaces') this.#bump((obj ?? old)?.name);
    // A selector-less Service's translation reads its slices (ports).
    else if (resource === 'endpointslices') this.#bump(namespace);
    else if (resource === 'wasmplugins') {
      this.#bump(namespace);
      this.#plugins = undefined;
    }
  }

  upsert(resource: string, key: string, obj: Stripped): void {
    const m = this.#map(resource);
    const old = m.get(key);
    m.set(key, obj);
    this.#index(resource, key, obj, old);
    // A pod's translation needs its namespace and the WasmPlugins: once those are listed, it is made as the pod arrives
    // (at start, while the rest of the pods are still being listed) and the snapshot build finds it made.
    if (resource === 'pods' && this.#listed.has('namespaces') && this.#listed.has('wasmplugins')) this.#pod(key, obj as SlimPod, []);
    if (resource === 'pods') this.#dirtyPods.add(key);
    else if (resource === 'services') this.#dirtyServices.add(key);
    else this.#dirtyOther = true;
    this.#onChange(resource);
  }

  remove(resource: string, key: string): void {
    const m = this.#map(resource);
    const old = m.get(key);
    m.delete(key);
    this.#cache.get(resource)?.delete(key);
    this.#lastGood.get(resource)?.delete(key);
    this.#index(resource, key, undefined, old);
    if (resource === 'pods') this.#dirtyPods.add(key);
    else if (resource === 'services') this.#dirtyServices.add(key);
    else this.#dirtyOther = true;
    this.#onChange(resource);
  }

  synced(resource: string): void {
    this.#listed.add(resource);
    this.#onSynced(resource);
  }

  /** Whether only pods and Services changed since the last applied snapshot (so `podDelta` and `serviceDelta` may apply them without a rebuild). */
  get onlyPodsAndServicesChanged(): boolean {
    return !this.#dirtyOther;
  }

  /** Marks a plugin bad after the fact (its module failed to load): its last good version serves until the object changes. */
  rejectPlugin(modelName: string, reason: string): boolean {
    for (const [key, o] of this.wasmPlugins) {
      if (modelPluginName(o.namespace ?? 'default', o.name) !== modelName) continue;
      this.#cacheOf('wasmplugins').set(key, { source: o, epoch: 'rejected', result: { ok: false, reason } });
      this.#bump(o.namespace);
      this.#plugins = undefined;
      this.#dirtyOther = true;
      return true;
    }
    return false;
  }

  #cacheOf(resource: string): Map<string, Cached<unknown>> {
    let m = this.#cache.get(resource);
    if (m === undefined) this.#cache.set(resource, (m = new Map<string, Cached<unknown>>()));
    return m;
  }

  #lastGoodOf(resource: string): Map<string, unknown> {
    let m = this.#lastGood.get(resource);
    if (m === undefined) this.#lastGood.set(resource, (m = new Map<string, unknown>()));
    return m;
  }

  #epochOf(namespace: string | undefined): string {
    return `${this.#globalEpoch}/${namespace === undefined ? '' : (this.#nsEpoch.get(namespace) ?? 0)}`;
  }

  /** Maps one object, memoized per object version (and per epoch of its namespace for what depends on namespaces and plugins). */
  #translate<T>(resource: ModelResource, key: string, obj: Stripped, depends: string | undefined, map: () => Mapped<T> | undefined, problems: ObjectProblem[]): T | undefined {
    const cache = this.#cacheOf(resource);
    let c = cache.get(key) as Cached<T> | undefined;
    const epoch = depends === undefined ? '' : this.#epochOf(depends);
    if (c === undefined || c.source !== obj || (c.epoch !== epoch && c.epoch !== 'rejected')) {
      c = { source: obj, epoch, result: map() };
      cache.set(key, c);
      if (c.result?.ok === true) this.#lastGoodOf(resource).set(key, c.result.value);
    }
    if (c.result === undefined) return undefined;
    if (c.result.ok) return c.result.value;
    const last = this.#lastGoodOf(resource).get(key) as T | undefined;
    problems.push({ ...refOf(resource, obj), reason: c.result.reason, lastGoodServing: last !== undefined });
    return last;
  }

  /**
   * weft.dev annotations in the model's form: a plugin named in namespace `ns` is the WasmPlugin `name.ns` (or a plugin
   * of the file), plus plugins that attach themselves (WasmPlugin selector/targetRefs). Undefined entries are problems.
   */
  #annotations(own: Record<string, string>, namespace: string, attached: string[], plugins: Set<string>): Mapped<Record<string, string>> {
    const out: Record<string, string> = {};
    const resolve = (n: string): string | undefined => (plugins.has(modelPluginName(namespace, n)) ? modelPluginName(namespace, n) : this.#filePlugins.has(n) ? n : undefined);
    const list = own[PLUGINS_ANNOTATION];
    const names: string[] = [];
    if (list !== undefined) {
      for (const n of parsePluginList(list)) {
        const r = resolve(n);
        if (r === undefined) return { ok: false, reason: `annotation ${PLUGINS_ANNOTATION} names "${n}", but there is no WasmPlugin ${namespace}/${n}` };
        names.push(r);
      }
    }
    for (const a of attached) if (!names.includes(a)) names.push(a);
    if (list !== undefined || names.length > 0) out[PLUGINS_ANNOTATION] = names.join(', ');
    for (const k in own) {
      if (!k.startsWith(PLUGIN_CONFIG_ANNOTATION_PREFIX)) continue;
      const v = own[k] ?? '';
      const n = k.slice(PLUGIN_CONFIG_ANNOTATION_PREFIX.length);
      try {
        JSON.parse(v);
      } catch (err) {
        return { ok: false, reason: `annotation ${k} is not valid JSON: ${(err as Error).message}` };
      }
      const r = resolve(n);
      if (r === undefined) return { ok: false, reason: `annotation ${k} configures "${n}", but there is no WasmPlugin ${namespace}/${n}` };
      out[PLUGIN_CONFIG_ANNOTATION_PREFIX + r] = v;
    }
    return { ok: true, value: out };
  }

  /** The WasmPlugins' translations and what they attach to (rebuilt when a WasmPlugin changes). */
  #pluginIndex(): PluginIndex {
    if (this.#plugins !== undefined) return this.#plugins;
    const index: PluginIndex = { wasm: [], names: new Set(), selectorPlugins: [], servicePlugins: new Map(), problems: [] };
    for (const [key, o] of this.wasmPlugins) {
      const v = this.#translate('wasmplugins', key, o, undefined, () => mapWasmPlugin(o), index.problems);
      if (v === undefined) continue;
      const namespace = o.namespace ?? 'default';
      index.wasm.push({ namespace, value: v, ref: refOf('wasmplugins', o) });
      index.names.add(v.plugin.name);
      if (v.selector !== undefined) index.selectorPlugins.push({ namespace, value: v });
      for (const s of v.services) index.servicePlugins.set(`${namespace}/${s}`, [...(index.servicePlugins.get(`${namespace}/${s}`) ?? []), v.plugin.name]);
    }
    this.#plugins = index;
    return index;
  }

  #pod(key: string, pod: SlimPod, problems: ObjectProblem[]): WorkloadConfig | undefined {
    const namespace = pod.namespace ?? 'default';
    return this.#translate<WorkloadConfig>('pods', key, pod, namespace, () => {
      const plugins = this.#pluginIndex();
      const attached: string[] = [];
      for (const w of plugins.selectorPlugins) if ((w.namespace === namespace || w.namespace === ROOT_NAMESPACE) && matches(w.value.selector ?? {}, pod.labels)) attached.push(w.value.plugin.name);
      const ann = this.#annotations(pod.annotations, namespace, attached, plugins.names);
      if (!ann.ok) return ann;
      return mapPod(pod, isEnrolled(pod, this.namespaces.get(namespace)), ann.value);
    }, problems);
  }

  #service(key: string, svc: SlimService, problems: ObjectProblem[]): ServiceConfig | undefined {
    const namespace = svc.namespace ?? 'default';
    const plugins = this.#pluginIndex();
    // A named targetPort depends on the pods it selects, and a selector-less Service on its EndpointSlices; both change
    // without the Service changing.
    const slices = svc.selector === undefined ? this.#slicesOf(namespace, svc.name) : [];
    if (slices.length > 0 || svc.ports.some((p) => typeof p.targetPort === 'string')) this.#cacheOf('services').delete(key);
    return this.#translate<ServiceConfig>('services', key, svc, namespace, () => {
      const tcp = svc.ports.filter((p) => p.protocol === 'TCP');
      if (svc.type === 'ExternalName' || tcp.length === 0) return undefined;
      const ann = this.#annotations(svc.annotations, namespace, plugins.servicePlugins.get(`${namespace}/${svc.name}`) ?? [], plugins.names);
      if (!ann.ok) return ann;
      /** A named targetPort is the container port of that name on the selected pods (the first by name when they differ, whatever order they arrived in). */
      const named = (portName: string): number | undefined => {
        if (svc.selector === undefined) return undefined;
        let found: { key: string; port: number } | undefined;
        for (const k of this.#podsByNamespace.get(namespace) ?? []) {
          const pod = this.pods.get(k);
          const port = pod?.ports[portName];
          if (pod === undefined || port === undefined || !matches(svc.selector, pod.labels)) continue;
          if (found === undefined || k < found.key) found = { key: k, port };
        }
        return found?.port;
      };
      const ports = tcp.map((p) => {
        // Without a selector the slices' ports are the endpoints' (matched by port name, as kube-proxy does).
        const slicePort = slices.flatMap((sl) => sl.ports).find((sp) => sp.protocol === 'TCP' && sp.name === p.name);
        const target = slicePort !== undefined ? slicePort.port : typeof p.targetPort === 'number' ? p.targetPort : p.targetPort === undefined ? undefined : named(p.targetPort);
        const appProtocol = appProtocolOf(p);
        return { ...(p.name === undefined ? {} : { name: p.name }), port: p.port, ...(target === undefined ? {} : { targetPort: target }), ...(appProtocol === undefined ? {} : { appProtocol }) };
      });
      // A selector-less Service selects the workloads its EndpointSlices describe (endpoint-slice-mapping.ts).
      const selector = svc.selector ?? (slices.length > 0 ? { [SERVICE_NAME_LABEL]: svc.name } : undefined);
      const parsed = serviceSchema.safeParse({ name: svc.name, namespace, addresses: svc.clusterIps, ports, ...(selector === undefined ? {} : { selector }), annotations: ann.value });
      return parsed.success ? { ok: true, value: parsed.data } : { ok: false, reason: firstIssue(parsed.error.issues) };
    }, problems);
  }

  #slicesOf(namespace: string, service: string): SlimEndpointSlice[] {
    const out: SlimEndpointSlice[] = [];
    for (const slice of this.endpointSlices.values()) if (slice.service === service && (slice.namespace ?? 'default') === namespace) out.push(slice);
    return out;
  }

  build(): KubeMesh {
    const problems: ObjectProblem[] = [];
    const mesh: KubeMesh = { namespaces: [], workloads: [], services: [], plugins: [], policies: [], origins: { namespaces: [], workloads: [], services: [], plugins: [], policies: [] }, problems };
    const plugins = this.#pluginIndex();
    problems.push(...plugins.problems);
    for (const w of plugins.wasm) {
      mesh.plugins.push(w.value.plugin);
      mesh.origins.plugins.push(w.ref);
    }
    for (const [key, ns] of this.namespaces) {
      const v = this.#translate<NamespaceConfig>('namespaces', key, ns, ns.name, () => {
        const ann = this.#annotations(ns.annotations, ns.name, [], plugins.names);
        if (!ann.ok) return ann;
        const parsed = namespaceSchema.safeParse({ name: ns.name, labels: ns.labels, annotations: ann.value });
        return parsed.success ? { ok: true, value: parsed.data } : { ok: false, reason: firstIssue(parsed.error.issues) };
      }, problems);
      if (v === undefined) continue;
      mesh.namespaces.push(v);
      mesh.origins.namespaces.push(refOf('namespaces', ns));
    }
    for (const [key, pod] of this.pods) {
      const v = this.#pod(key, pod, problems);
      if (v === undefined) continue;
      mesh.workloads.push(v);
      mesh.origins.workloads.push(refOf('pods', pod));
    }
    // A slice's address that is a pod's is that pod (with its identity); only the others become workloads.
    let podIps: Set<string> | undefined;
    for (const [key, slice] of this.endpointSlices) {
      const svc = slice.service === undefined ? undefined : this.services.get(`${slice.namespace ?? 'default'}/${slice.service}`);
      if (svc === undefined || svc.selector !== undefined) continue;
      podIps ??= new Set(mesh.workloads.flatMap((w) => w.addresses));
      const taken = (ip: string): boolean => podIps?.has(ip) === true;
      for (const w of this.#translate('endpointslices', key, slice, undefined, () => ({ ok: true, value: sliceWorkloads(slice) }), problems) ?? []) {
        if (w.addresses.some(taken)) continue;
        mesh.workloads.push(w);
        mesh.origins.workloads.push(refOf('endpointslices', slice));
      }
    }
    for (const [key, svc] of this.services) {
      const v = this.#service(key, svc, problems);
      if (v === undefined) continue;
      mesh.services.push(v);
      mesh.origins.services.push(refOf('services', svc));
    }
    for (const [key, ap] of this.authorizationPolicies) {
      const v = this.#translate('authorizationpolicies', key, ap, undefined, () => mapAuthorizationPolicy(ap, this.#trustDomain), problems);
      for (const p of v ?? []) {
        mesh.policies.push(p);
        mesh.origins.policies.push(refOf('authorizationpolicies', ap));
      }
    }
    return mesh;
  }

  /** The mesh `build()` gave was applied (after cross-reference drops): it is what serves now. */
  applied(mesh: KubeMesh): void {
    this.#served.clear();
    mesh.workloads.forEach((workload, i) => {
      const ref = mesh.origins.workloads[i];
      if (ref?.resource === 'pods') this.#served.set(keyOf(ref), { workload, ref });
    });
    this.#servedServices.clear();
    mesh.services.forEach((service, i) => {
      const ref = mesh.origins.services[i];
      if (ref?.resource === 'services') this.#servedServices.set(keyOf(ref), { service, ref });
    });
    this.#dirtyPods.clear();
    this.#dirtyServices.clear();
    this.#dirtyOther = false;
  }

  /** The serving workloads with their pods (for /config_dump). */
  get served(): ReadonlyMap<string, { workload: WorkloadConfig; ref: ObjectRef }> {
    return this.#served;
  }

  /**
   * The pods changed since the last applied snapshot as a workload change, when it can be applied without a rebuild:
   * not one `needsRebuild` names, no per-object plugin configuration (a plugin instance), no waypoint, no Service whose named
   * targetPort reads it, and no address taken by another workload (`ownerOf` is the serving snapshot's index).
   */
  podDelta(needsRebuild: (w: WorkloadConfig) => boolean, ownerOf: (ip: string) => string | undefined): PodDeltaResult {
    const delta: PodDelta = { upsert: [], remove: [], served: new Map(), problems: [], pods: new Set(this.#dirtyPods) };
    const claimed = new Map<string, string>();
    for (const key of this.#dirtyPods) {
      const pod = this.pods.get(key);
      const before = this.#served.get(key);
      const next = pod === undefined ? undefined : this.#pod(key, pod, delta.problems);
      if (next === before?.workload) continue;
      for (const w of [before?.workload, next]) {
        if (w === undefined) continue;
        if (needsRebuild(w)) return { ok: false, reason: `pod ${key} is on this node, and the file names waypoints` };
        if (w.waypoint !== undefined || Object.keys(w.annotations).some((k) => k.startsWith(PLUGIN_CONFIG_ANNOTATION_PREFIX))) return { ok: false, reason: `pod ${key} carries plugin configuration` };
        for (const s of this.#namedPortServices.get(w.namespace) ?? []) {
          const selector = this.services.get(s)?.selector;
          if (selector !== undefined && matches(selector, w.labels)) return { ok: false, reason: `service ${s} resolves a named port on pod ${key}` };
        }
      }
      // A pod's key (`namespace/name`) is its workload's uid.
      const uid = key;
      if (next === undefined) {
        if (before !== undefined) delta.remove.push(uid);
        delta.served.set(key, undefined);
        continue;
      }
      for (const ip of next.addresses) {
        const owner = claimed.get(ip) ?? ownerOf(ip);
        if (owner !== undefined && owner !== uid) return { ok: false, reason: `address ${ip} of pod ${key} is taken by ${owner}` };
        claimed.set(ip, uid);
      }
      delta.upsert.push(next);
      delta.served.set(key, { workload: next, ref: refOf('pods', pod as SlimPod) });
    }
    return { ok: true, delta };
  }

  /**
   * The Services changed since the last applied snapshot as a change to the snapshot's services, when it can be applied
   * without a rebuild: no waypoint and no per-object plugin configuration (plugin instances and the L7 decision depend on
   * them), and no EndpointSlices behind it (a selector-less Service's slices are workloads only while it has no selector).
   * Address conflicts with other services are the caller's to check against the serving snapshot.
   */
  serviceDelta(): ServiceDeltaResult {
    const delta: ServiceDelta = { upsert: [], remove: [], served: new Map(), problems: [], services: new Set(this.#dirtyServices) };
    for (const key of this.#dirtyServices) {
      const svc = this.services.get(key);
      const before = this.#servedServices.get(key);
      const [namespace = 'default', name = ''] = key.split('/');
      if (this.#slicesOf(namespace, name).length > 0) return { ok: false, reason: `service ${key} has EndpointSlices` };
      const next = svc === undefined ? undefined : this.#service(key, svc, delta.problems);
      if (next === before?.service) continue;
      for (const s of [before?.service, next]) {
        if (s === undefined) continue;
        if (s.waypoint !== undefined || Object.keys(s.annotations).some((k) => k.startsWith(PLUGIN_CONFIG_ANNOTATION_PREFIX))) return { ok: false, reason: `service ${key} carries plugin configuration or a waypoint` };
      }
      if (next === undefined) {
        if (before !== undefined) delta.remove.push(`${before.service.name}.${before.service.namespace}`);
        delta.served.set(key, undefined);
        continue;
      }
      delta.upsert.push(next);
      delta.served.set(key, { service: next, ref: refOf('services', svc as SlimService) });
    }
    return { ok: true, delta };
  }

  /** A delta from `serviceDelta` was applied. */
  appliedServiceDelta(delta: ServiceDelta): void {
    for (const [key, entry] of delta.served) {
      if (entry === undefined) this.#servedServices.delete(key);
      else this.#servedServices.set(key, entry);
    }
    for (const key of delta.services) this.#dirtyServices.delete(key);
  }

  /** The serving Services with their objects (for /config_dump). */
  get servedServices(): ReadonlyMap<string, { service: ServiceConfig; ref: ObjectRef }> {
    return this.#servedServices;
  }

  /** A delta from `podDelta` was applied. */
  appliedDelta(delta: PodDelta): void {
    for (const [key, entry] of delta.served) {
      if (entry === undefined) this.#served.delete(key);
      else this.#served.set(key, entry);
    }
    for (const key of delta.pods) this.#dirtyPods.delete(key);
  }
}
