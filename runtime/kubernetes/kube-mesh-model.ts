/**
 * The Kubernetes objects weft holds (fed by the reflectors) and their translation into weft's model: Pods to workloads,
 * Services, Namespaces, WasmPlugins to plugins, AuthorizationPolicies to policies. Each object is checked on its own; a bad
 * one is listed as a problem and its last good version (if any) stands in for it, so it never blocks the rest.
 */
import { namespaceSchema, serviceSchema, workloadSchema, type NamespaceConfig, type PluginConfig, type PolicyConfig, type ServiceConfig, type WorkloadConfig } from '../config/config-schema.js';
import { ROOT_NAMESPACE } from '../authz/authz-policy.js';
import { PLUGINS_ANNOTATION, PLUGIN_CONFIG_ANNOTATION_PREFIX, parsePluginList } from '../state/plugin-attachment.js';
import { isEnrolled } from './kube-enrollment.js';
import type { SlimCustom, SlimNamespace, SlimPod, SlimService } from './kube-objects.js';
import type { ReflectorHandler, Stripped } from './kube-reflector.js';
import { mapAuthorizationPolicy } from './authorization-policy-mapping.js';
import { mapWasmPlugin, modelPluginName, type MappedWasmPlugin } from './wasm-plugin-mapping.js';

export const KINDS = { pods: 'Pod', services: 'Service', namespaces: 'Namespace', wasmplugins: 'WasmPlugin', authorizationpolicies: 'AuthorizationPolicy' } as const;
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
  epoch: number;
  result: Mapped<T> | undefined;
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
  readonly services = new Map<string, SlimService>();
  readonly namespaces = new Map<string, SlimNamespace>();
  readonly wasmPlugins = new Map<string, SlimCustom>();
  readonly authorizationPolicies = new Map<string, SlimCustom>();
  readonly #trustDomain: string;
  readonly #onChange: (resource: string) => void;
  readonly #onSynced: (resource: string) => void;
  /** Bumped when namespaces or plugins change: every pod's and service's translation depends on them. */
  #epoch = 0;
  /** Per resource, by object key: the last translation and the last good one. */
  readonly #cache = new Map<string, Map<string, Cached<unknown>>>();
  readonly #lastGood = new Map<string, Map<string, unknown>>();
  /** File-defined plugins a cluster annotation may also name (global names). */
  filePlugins = new Set<string>();

  constructor(opts: { trustDomain: string; onChange?: (resource: string) => void; onSynced?: (resource: string) => void }) {
    this.#trustDomain = opts.trustDomain;
    this.#onChange = opts.onChange ?? (() => undefined);
    this.#onSynced = opts.onSynced ?? (() => undefined);
  }

  #map(resource: string): Map<string, Stripped> {
    const maps: Record<string, Map<string, Stripped>> = { pods: this.pods, services: this.services, namespaces: this.namespaces, wasmplugins: this.wasmPlugins, authorizationpolicies: this.authorizationPolicies };
    const m = maps[resource];
    if (m === undefined) throw new Error(`no model for ${resource}`);
    return m;
  }

  upsert(resource: string, key: string, obj: Stripped): void {
    this.#map(resource).set(key, obj);
    if (resource === 'namespaces' || resource === 'wasmplugins') this.#epoch++;
    this.#onChange(resource);
  }

  remove(resource: string, key: string): void {
    this.#map(resource).delete(key);
    this.#cache.get(resource)?.delete(key);
    this.#lastGood.get(resource)?.delete(key);
    if (resource === 'namespaces' || resource === 'wasmplugins') this.#epoch++;
    this.#onChange(resource);
  }

  synced(resource: string): void {
    this.#onSynced(resource);
  }

  /** Marks a plugin bad after the fact (its module failed to load): its last good version serves until the object changes. */
  rejectPlugin(modelName: string, reason: string): boolean {
    for (const [key, o] of this.wasmPlugins) {
      if (modelPluginName(o.namespace ?? 'default', o.name) !== modelName) continue;
      this.#cacheOf('wasmplugins').set(key, { source: o, epoch: Infinity, result: { ok: false, reason } });
      this.#epoch++;
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

  /** Maps one object, memoized per object version (and per epoch for what depends on namespaces and plugins). */
  #translate<T>(resource: ModelResource, key: string, obj: Stripped, epochDependent: boolean, map: () => Mapped<T> | undefined, problems: ObjectProblem[]): T | undefined {
    const cache = this.#cacheOf(resource);
    let c = cache.get(key) as Cached<T> | undefined;
    if (c === undefined || c.source !== obj || (epochDependent && c.epoch !== this.#epoch && c.epoch !== Infinity)) {
      c = { source: obj, epoch: this.#epoch, result: map() };
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
    const resolve = (n: string): string | undefined => (plugins.has(modelPluginName(namespace, n)) ? modelPluginName(namespace, n) : this.filePlugins.has(n) ? n : undefined);
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
    for (const [k, v] of Object.entries(own)) {
      if (!k.startsWith(PLUGIN_CONFIG_ANNOTATION_PREFIX)) continue;
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

  build(): KubeMesh {
    const problems: ObjectProblem[] = [];
    const mesh: KubeMesh = { namespaces: [], workloads: [], services: [], plugins: [], policies: [], origins: { namespaces: [], workloads: [], services: [], plugins: [], policies: [] }, problems };

    const wasm: { ref: ObjectRef; namespace: string; value: MappedWasmPlugin }[] = [];
    for (const [key, o] of this.wasmPlugins) {
      const v = this.#translate('wasmplugins', key, o, false, () => mapWasmPlugin(o), problems);
      if (v === undefined) continue;
      wasm.push({ ref: refOf('wasmplugins', o), namespace: o.namespace ?? 'default', value: v });
      mesh.plugins.push(v.plugin);
      mesh.origins.plugins.push(refOf('wasmplugins', o));
    }
    const pluginNames = new Set(mesh.plugins.map((p) => p.name));
    const selectorPlugins = wasm.filter((w) => w.value.selector !== undefined);
    const servicePlugins = new Map<string, string[]>();
    for (const w of wasm) for (const s of w.value.services) servicePlugins.set(`${w.namespace}/${s}`, [...(servicePlugins.get(`${w.namespace}/${s}`) ?? []), w.value.plugin.name]);

    for (const [key, ns] of this.namespaces) {
      const v = this.#translate<NamespaceConfig>('namespaces', key, ns, true, () => {
        const ann = this.#annotations(ns.annotations, ns.name, [], pluginNames);
        if (!ann.ok) return ann;
        const parsed = namespaceSchema.safeParse({ name: ns.name, labels: ns.labels, annotations: ann.value });
        return parsed.success ? { ok: true, value: parsed.data } : { ok: false, reason: firstIssue(parsed.error.issues) };
      }, problems);
      if (v === undefined) continue;
      mesh.namespaces.push(v);
      mesh.origins.namespaces.push(refOf('namespaces', ns));
    }

    const podsByNamespace = new Map<string, SlimPod[]>();
    for (const [key, pod] of this.pods) {
      const namespace = pod.namespace ?? 'default';
      let list = podsByNamespace.get(namespace);
      if (list === undefined) podsByNamespace.set(namespace, (list = []));
      list.push(pod);
      const v = this.#translate<WorkloadConfig>('pods', key, pod, true, () => {
        // Terminal, unscheduled and host-network pods are not addressable mesh workloads.
        if (pod.ips.length === 0 || pod.hostNetwork || pod.phase === 'Succeeded' || pod.phase === 'Failed') return undefined;
        const attached = selectorPlugins.filter((w) => (w.namespace === namespace || w.namespace === ROOT_NAMESPACE) && matches(w.value.selector ?? {}, pod.labels)).map((w) => w.value.plugin.name);
        const ann = this.#annotations(pod.annotations, namespace, attached, pluginNames);
        if (!ann.ok) return ann;
        const raw = { name: pod.name, namespace, serviceAccount: pod.serviceAccount, addresses: pod.ips, node: pod.nodeName, protocol: isEnrolled(pod, this.namespaces.get(namespace)) ? 'HBONE' : 'TCP', status: pod.ready ? 'Healthy' : 'Unhealthy', labels: pod.labels, annotations: ann.value };
        const parsed = workloadSchema.safeParse(raw);
        return parsed.success ? { ok: true, value: parsed.data } : { ok: false, reason: firstIssue(parsed.error.issues) };
      }, problems);
      if (v === undefined) continue;
      mesh.workloads.push(v);
      mesh.origins.workloads.push(refOf('pods', pod));
    }

    for (const [key, svc] of this.services) {
      // A named targetPort depends on the pods it selects, which change without the Service changing.
      if (svc.ports.some((p) => typeof p.targetPort === 'string')) this.#cacheOf('services').delete(key);
      const v = this.#translate<ServiceConfig>('services', key, svc, true, () => {
        const namespace = svc.namespace ?? 'default';
        const tcp = svc.ports.filter((p) => p.protocol === 'TCP');
        if (svc.type === 'ExternalName' || tcp.length === 0) return undefined;
        const ann = this.#annotations(svc.annotations, namespace, servicePlugins.get(`${namespace}/${svc.name}`) ?? [], pluginNames);
        if (!ann.ok) return ann;
        const selected = svc.selector === undefined ? [] : (podsByNamespace.get(namespace) ?? []).filter((p) => matches(svc.selector ?? {}, p.labels));
        const ports = tcp.map((p) => {
          // A named targetPort is the container port of that name on the selected pods.
          const target = typeof p.targetPort === 'number' ? p.targetPort : p.targetPort === undefined ? undefined : selected.map((pod) => pod.ports[p.targetPort as string]).find((n) => n !== undefined);
          const appProtocol = appProtocolOf(p);
          return { ...(p.name === undefined ? {} : { name: p.name }), port: p.port, ...(target === undefined ? {} : { targetPort: target }), ...(appProtocol === undefined ? {} : { appProtocol }) };
        });
        const parsed = serviceSchema.safeParse({ name: svc.name, namespace, addresses: svc.clusterIps, ports, ...(svc.selector === undefined ? {} : { selector: svc.selector }), annotations: ann.value });
        return parsed.success ? { ok: true, value: parsed.data } : { ok: false, reason: firstIssue(parsed.error.issues) };
      }, problems);
      if (v === undefined) continue;
      mesh.services.push(v);
      mesh.origins.services.push(refOf('services', svc));
    }

    for (const [key, ap] of this.authorizationPolicies) {
      const v = this.#translate('authorizationpolicies', key, ap, false, () => mapAuthorizationPolicy(ap, this.#trustDomain), problems);
      for (const p of v ?? []) {
        mesh.policies.push(p);
        mesh.origins.policies.push(refOf('authorizationpolicies', ap));
      }
    }
    return mesh;
  }
}
