/**
 * `source: kubernetes`: runs one reflector per watched resource, translates the cluster into weft's model, merges it
 * with the file's part (listeners, state, limits and any file-defined services, plugins, policies) and applies it through
 * the same validation and atomic snapshot swap as a file reload, coalesced. Bad objects are reported and routed around.
 */
import type { WeftConfig } from '../config/config-schema.js';
import { crossReferenceProblems } from '../config/config-validate.js';
import type { ReloadResult } from '../app.js';
import type { StateSnapshot, WorkloadChange } from '../state/state-snapshot.js';
import { createLogger } from '../log.js';
import type { MetricsRegistry } from '../telemetry/metrics-registry.js';
import { KubeClient } from './kube-client.js';
import type { KubeConnection } from './kube-config.js';
import { KubeEventRecorder } from './kube-event-recorder.js';
import { KINDS, KubeMeshModel, type KubeMesh, type ObjectProblem, type ObjectRef, type ServiceDelta } from './kube-mesh-model.js';
import { KubeMetrics } from './kube-metrics.js';
import { STRIP_BY_RESOURCE } from './kube-objects.js';
import { KubeReflector, keyOf, type ReflectorTuning, type Stripped } from './kube-reflector.js';
import { WATCHED_RESOURCES, type WatchedResource } from './watched-resources.js';

const log = createLogger('kubernetes');

/** Watch events arrive in bursts (a rollout touches many pods): those within a few ms are applied together. */
export const DEFAULT_COALESCE_MS = 5;

export interface KubernetesSourceTarget {
  reload(config: WeftConfig): Promise<ReloadResult>;
  recordRejectedReload(): void;
  /** Applies a change to workloads only by deriving the serving snapshot (App); without it every change is a full reload. */
  patchWorkloads?(change: WorkloadChange): ReloadResult;
  /** The serving snapshot (for patchWorkloads' address checks). */
  readonly state?: { readonly current: StateSnapshot };
}

export interface KubernetesSourceOptions {
  /** The file's config (source: kubernetes); its node is this node's name. */
  base: WeftConfig;
  connection: KubeConnection;
  target: KubernetesSourceTarget;
  metrics: MetricsRegistry;
  tuning?: Partial<ReflectorTuning>;
  coalesceMs?: number;
  /** Post a Kubernetes Event on each rejected object (default true; RBAC: events create). */
  recordEvents?: boolean;
  /** Ask for built-in types as protobuf (default true; false reads everything as JSON). */
  protobuf?: boolean;
}

type Origin = { source: 'file' } | ({ source: 'kubernetes'; kind: string } & Omit<ObjectRef, 'resource'>);

export class KubernetesSource {
  readonly client: KubeClient;
  readonly model: KubeMeshModel;
  readonly metrics: KubeMetrics;
  readonly reflectors: KubeReflector<Stripped>[];
  #base: WeftConfig;
  readonly #target: KubernetesSourceTarget;
  readonly #coalesceMs: number;
  readonly #events: KubeEventRecorder | undefined;
  readonly #abort = new AbortController();
  readonly #synced = new Set<string>();
  #firstSync = false;
  readonly #firstSyncWaiters: (() => void)[] = [];
  #timer: NodeJS.Timeout | undefined;
  /** When the oldest change not yet in a served snapshot arrived (event-to-snapshot latency). */
  #pendingSince: number | undefined;
  #running: Promise<void> = Promise.resolve();
  #runs: Promise<void>[] = [];
  #reported = new Map<string, string>();
  #lastMesh: KubeMesh | undefined;
  #lastProblems: ObjectProblem[] = [];
  #fileChanged = false;

  constructor(opts: KubernetesSourceOptions) {
    this.#base = opts.base;
    this.#target = opts.target;
    this.#coalesceMs = opts.coalesceMs ?? DEFAULT_COALESCE_MS;
    this.metrics = new KubeMetrics(opts.metrics);
    this.client = new KubeClient(opts.connection);
    this.#events = opts.recordEvents === false ? undefined : new KubeEventRecorder(this.client, opts.base.node, this.metrics);
    this.model = new KubeMeshModel({
      trustDomain: opts.base.trustDomain,
      onChange: () => this.#schedule(),
      onSynced: (resource) => {
        this.#synced.add(resource);
        this.#schedule();
      },
    });
    this.model.filePlugins = new Set(opts.base.plugins.map((p) => p.name));
    const watched = WATCHED_RESOURCES.filter((r) => r.verbs.includes('watch'));
    this.reflectors = watched.map((resource) => {
      const strip = STRIP_BY_RESOURCE[resource.resource];
      if (strip === undefined) throw new Error(`no translation for watched resource ${resource.resource}`);
      return new KubeReflector<Stripped>({ client: this.client, resource, strip, handler: this.model, metrics: this.metrics, listOffThread: true, ...(opts.tuning === undefined ? {} : { tuning: opts.tuning }), ...(opts.protobuf === undefined ? {} : { protobuf: opts.protobuf }) });
    });
  }

  /** What `weft run` prints: the API server and each resource watched. */
  describe(origin: string): string[] {
    const what = (r: WatchedResource): string => `${r.resource}${r.group === '' ? '' : `.${r.group}`}/${r.version}${r.optional ? ' (if the CRD is installed)' : ''}`;
    return [`kubernetes source: ${this.client.server} (${origin}), node ${this.#base.node}`, ...this.reflectors.map((r) => `  watching ${what(r.resource)}${r.resource.namespaced ? ' in all namespaces' : ''}${r.resource.labelSelector === undefined ? '' : ` where ${r.resource.labelSelector}`}`)];
  }

  get synced(): boolean {
    return this.#firstSync;
  }

  start(): void {
    for (const r of this.reflectors) this.#runs.push(r.run(this.#abort.signal));
  }

  /** Resolves once every resource was listed and the first snapshot with them is serving. */
  whenSynced(): Promise<void> {
    return this.#firstSync ? Promise.resolve() : new Promise((resolve) => this.#firstSyncWaiters.push(resolve));
  }

  /** Resolves once every change received so far is in the serving snapshot (tests, benchmarks). */
  async settled(): Promise<void> {
    while (this.#timer !== undefined || this.#pendingSince !== undefined) {
      await new Promise((resolve) => setTimeout(resolve, this.#coalesceMs));
      await this.#running;
    }
    await this.#running;
  }

  /** A new file config (file reload): the cluster's part is merged into it again. */
  async reload(config: WeftConfig): Promise<ReloadResult> {
    this.#base = config;
    this.model.filePlugins = new Set(config.plugins.map((p) => p.name));
    if (!this.#firstSync) return this.#target.reload(config);
    // The file's part changed: only a rebuild merges it (a patch carries the cluster's changes alone).
    this.#fileChanged = true;
    return this.#enqueue();
  }

  recordRejectedReload(): void {
    this.#target.recordRejectedReload();
  }

  #schedule(): void {
    this.#pendingSince ??= performance.now();
    if (this.#timer !== undefined) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#enqueue();
    }, this.#coalesceMs);
  }

  #enqueue(): Promise<ReloadResult> {
    const run = this.#running.then(() => this.#apply());
    this.#running = run.then(() => undefined, () => undefined);
    return run;
  }

  async #apply(): Promise<ReloadResult> {
    if (this.reflectors.some((r) => !this.#synced.has(r.resource.resource))) return { ok: true };
    const since = this.#pendingSince;
    this.#pendingSince = undefined;
    const fileChanged = this.#fileChanged;
    this.#fileChanged = false;
    if (this.#firstSync && !fileChanged && this.#patch()) {
      if (since !== undefined) this.metrics.eventToSnapshot.observe((performance.now() - since) / 1000);
      this.#report();
      return { ok: true };
    }
    let result: ReloadResult = { ok: true };
    // A plugin whose module fails to load is blamed on its WasmPlugin and the snapshot is built again without it.
    for (let attempt = 0; attempt < 3; attempt++) {
      const mesh = this.model.build();
      const config = this.#assemble(mesh);
      this.#lastProblems = mesh.problems;
      result = await this.#target.reload(config);
      if (result.ok) {
        this.#lastMesh = mesh;
        this.model.applied(mesh);
        this.metrics.applies.inc({ result: 'applied' });
        break;
      }
      this.metrics.applies.inc({ result: 'rejected' });
      const blamed = (result.pluginProblems ?? []).filter((p) => this.model.rejectPlugin(p.plugin, `cannot load: ${p.reason}`));
      if (blamed.length === 0) {
        log.error({ problems: result.problems }, 'cluster configuration rejected; the previous snapshot keeps serving');
        break;
      }
    }
    if (since !== undefined && result.ok) this.metrics.eventToSnapshot.observe((performance.now() - since) / 1000);
    this.#report();
    if (!this.#firstSync && result.ok) {
      this.#firstSync = true;
      log.info({ workloads: this.#lastMesh?.workloads.length, services: this.#lastMesh?.services.length, plugins: this.#lastMesh?.plugins.length, policies: this.#lastMesh?.policies.length }, 'kubernetes source synced');
      for (const w of this.#firstSyncWaiters.splice(0)) w();
    }
    return result;
  }

  /**
   * Applies pod and Service changes by deriving the serving snapshot (the common case at scale: 150,000 pods churn while
   * plugins and policies stay; a Service edit touches one entry of 10,000); false when a full rebuild is needed instead.
   */
  #patch(): boolean {
    const target = this.#target;
    if (target.patchWorkloads === undefined || target.state === undefined || !this.model.onlyPodsAndServicesChanged) return false;
    const state = target.state;
    // This node's pods take the same path (certificates and HBONE listeners follow the snapshot's local list), unless
    // the file names waypoints: a local pod may then start or stop hosting one, which decides whether L7 must load.
    const node = this.#base.node;
    const waypoints = this.#base.services.some((s) => s.waypoint !== undefined);
    const r = this.model.podDelta((w) => waypoints && (w.node === undefined || w.node === node), (ip) => state.current.workloadByIp(ip)?.uid);
    const sv = r.ok ? this.model.serviceDelta() : r;
    const conflict = sv.ok ? this.#serviceConflict(sv.delta, state.current) : sv.reason;
    if (!r.ok || !sv.ok || conflict !== undefined) {
      log.debug({ reason: conflict }, 'change needs a full rebuild');
      return false;
    }
    const { delta } = r;
    const services = sv.delta;
    if (delta.upsert.length + delta.remove.length + services.upsert.length + services.remove.length > 0) {
      target.patchWorkloads({ upsert: delta.upsert, remove: delta.remove, services: { upsert: services.upsert, remove: services.remove } });
    }
    this.model.appliedDelta(delta);
    this.model.appliedServiceDelta(services);
    const replaced = (p: ObjectProblem): boolean => (p.resource === 'pods' && delta.pods.has(keyOf(p))) || (p.resource === 'services' && services.services.has(keyOf(p)));
    this.#lastProblems = [...this.#lastProblems.filter((p) => !replaced(p)), ...delta.problems, ...services.problems];
    this.metrics.applies.inc({ result: 'patched' });
    return true;
  }

  /**
   * Why changed Services cannot be patched in: what a full rebuild's cross-reference checks would look at (an address
   * another service serves, a file service of the same name, a port listed twice, or file parts that name services).
   */
  #serviceConflict(delta: ServiceDelta, current: StateSnapshot): string | undefined {
    if (delta.upsert.length + delta.remove.length === 0) return undefined;
    const b = this.#base;
    if (b.localPorts.length > 0 || b.functions.length > 0 || current.config.policies.some((p) => p.targetRef !== undefined)) return 'services are named by localPorts, functions or policy targetRefs';
    const claimed = new Set<string>();
    for (const svc of delta.upsert) {
      const key = `${svc.name}.${svc.namespace}`;
      if (b.services.some((f) => f.name === svc.name && f.namespace === svc.namespace)) return `service ${key} is also defined in the file`;
      if (new Set(svc.ports.map((p) => p.port)).size !== svc.ports.length) return `service ${key} lists a port twice`;
      for (const vip of svc.addresses) {
        for (const p of svc.ports) {
          const owner = current.serviceByVip(vip, p.port)?.service.key;
          if ((owner !== undefined && owner !== key) || claimed.has(`${vip}:${p.port}`)) return `${vip}:${p.port} of service ${key} is served by another service`;
          claimed.add(`${vip}:${p.port}`);
        }
      }
    }
    return undefined;
  }

  /** File part plus cluster part; entries that break a cross-reference rule (a reused pod IP, a taken VIP) are dropped and reported. */
  #assemble(mesh: KubeMesh): WeftConfig {
    const b = this.#base;
    const lists = ['namespaces', 'services', 'plugins', 'policies', 'workloads'] as const;
    for (let round = 0; round < 3; round++) {
      const config: WeftConfig = { ...b, namespaces: [...b.namespaces, ...mesh.namespaces], workloads: mesh.workloads, services: [...b.services, ...mesh.services], plugins: [...b.plugins, ...mesh.plugins], policies: [...b.policies, ...mesh.policies] };
      const problems = crossReferenceProblems(config);
      if (problems.length === 0) return config;
      const drop = new Map<(typeof lists)[number], Set<number>>();
      for (const p of problems) {
        const list = lists.find((l) => l === p.path[0]);
        const index = typeof p.path[1] === 'number' ? p.path[1] - (list === 'workloads' ? 0 : b[list ?? 'workloads'].length) : -1;
        const ref = list === undefined || index < 0 ? undefined : mesh.origins[list][index];
        if (list === undefined || ref === undefined) continue;
        mesh.problems.push({ ...ref, reason: p.message, lastGoodServing: false });
        drop.set(list, (drop.get(list) ?? new Set()).add(index));
      }
      if (drop.size === 0) return config;
      for (const [list, indexes] of drop) {
        (mesh as unknown as Record<string, unknown[]>)[list] = mesh[list].filter((_, i) => !indexes.has(i));
        mesh.origins[list] = mesh.origins[list].filter((_, i) => !indexes.has(i));
      }
    }
    return { ...b, namespaces: [...b.namespaces, ...mesh.namespaces], workloads: mesh.workloads, services: [...b.services, ...mesh.services], plugins: [...b.plugins, ...mesh.plugins], policies: [...b.policies, ...mesh.policies] };
  }

  /** Logs, counts and records an Event for each problem not reported before (per object version and reason). */
  #report(): void {
    const problems = this.#lastProblems;
    const now = new Map<string, string>();
    const byKind = new Map<string, number>();
    for (const p of problems) {
      const id = `${p.resource}/${p.namespace ?? ''}/${p.name}`;
      const sig = `${p.resourceVersion} ${p.reason}`;
      now.set(id, sig);
      byKind.set(p.resource, (byKind.get(p.resource) ?? 0) + 1);
      if (this.#reported.get(id) === sig) continue;
      log.warn({ object: id, resourceVersion: p.resourceVersion, reason: p.reason, lastGoodServing: p.lastGoodServing }, 'object rejected');
      this.metrics.objectRejections.inc({ kind: p.resource, reason: p.reason.split(':')[0]?.slice(0, 60) ?? 'invalid' });
      this.#events?.record(p);
    }
    this.#reported = now;
    for (const kind of Object.keys(KINDS)) this.metrics.objectProblems.set({ kind }, byKind.get(kind) ?? 0);
  }

  /** /config_dump's `origins` section: each model entry's source, and the objects currently rejected. */
  dump(): { origins: Record<string, Record<string, Origin>>; rejected: ObjectProblem[] } {
    const b = this.#base;
    const origins: Record<string, Record<string, Origin>> = { namespaces: {}, workloads: {}, services: {}, plugins: {}, policies: {} };
    const entryKey = (list: string, e: { name: string; namespace?: string }): string => (list === 'plugins' || list === 'namespaces' ? e.name : `${e.namespace ?? 'default'}/${e.name}`);
    for (const list of ['namespaces', 'services', 'plugins', 'policies'] as const) for (const e of b[list]) (origins[list] ?? {})[entryKey(list, e)] = { source: 'file' };
    const m = this.#lastMesh;
    for (const { workload, ref } of this.model.served.values()) {
      const { resource, ...rest } = ref;
      (origins.workloads ?? {})[entryKey('workloads', workload)] = { source: 'kubernetes', kind: KINDS[resource], ...rest };
    }
    // Services change by patches too: the model has what serves.
    for (const { service, ref } of this.model.servedServices.values()) {
      const { resource, ...rest } = ref;
      (origins.services ?? {})[entryKey('services', service)] = { source: 'kubernetes', kind: KINDS[resource], ...rest };
    }
    if (m !== undefined) {
      // Workloads from EndpointSlices change only with a rebuild: the last one has them.
      m.workloads.forEach((e, i) => {
        const ref = m.origins.workloads[i];
        if (ref === undefined || ref.resource === 'pods') return;
        const { resource, ...rest } = ref;
        (origins.workloads ?? {})[entryKey('workloads', e)] = { source: 'kubernetes', kind: KINDS[resource], ...rest };
      });
      for (const list of ['namespaces', 'plugins', 'policies'] as const) {
        m[list].forEach((e, i) => {
          const ref = m.origins[list][i];
          if (ref === undefined) return;
          const { resource, ...rest } = ref;
          (origins[list] ?? {})[entryKey(list, e)] = { source: 'kubernetes', kind: KINDS[resource], ...rest };
        });
      }
    }
    return { origins, rejected: this.#lastProblems };
  }

  async stop(): Promise<void> {
    clearTimeout(this.#timer);
    this.#abort.abort();
    await Promise.all(this.#runs);
    await this.#running;
    await this.#events?.flush();
    await this.client.close();
  }
}
