/** The fake API server's storage: objects per resource, one global strictly increasing resourceVersion (as etcd's revision), and a compactable event log that watches replay from. */
import { randomUUID } from 'node:crypto';

export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: { name: string; namespace?: string; resourceVersion?: string; uid?: string; labels?: Record<string, string>; annotations?: Record<string, string>; [k: string]: unknown };
  [k: string]: unknown;
}

export interface ResourceType {
  group: string;
  version: string;
  resource: string;
  kind: string;
  namespaced: boolean;
  /** CRDs may be absent: their paths answer 404 until installed. */
  crd: boolean;
}

export const RESOURCE_TYPES: readonly ResourceType[] = [
  { group: '', version: 'v1', resource: 'pods', kind: 'Pod', namespaced: true, crd: false },
  { group: '', version: 'v1', resource: 'services', kind: 'Service', namespaced: true, crd: false },
  { group: '', version: 'v1', resource: 'namespaces', kind: 'Namespace', namespaced: false, crd: false },
  { group: '', version: 'v1', resource: 'nodes', kind: 'Node', namespaced: false, crd: false },
  { group: '', version: 'v1', resource: 'events', kind: 'Event', namespaced: true, crd: false },
  { group: 'discovery.k8s.io', version: 'v1', resource: 'endpointslices', kind: 'EndpointSlice', namespaced: true, crd: false },
  { group: 'extensions.istio.io', version: 'v1alpha1', resource: 'wasmplugins', kind: 'WasmPlugin', namespaced: true, crd: true },
  { group: 'security.istio.io', version: 'v1', resource: 'authorizationpolicies', kind: 'AuthorizationPolicy', namespaced: true, crd: true },
];

export type StoredEventType = 'ADDED' | 'MODIFIED' | 'DELETED';

export interface StoredEvent {
  rv: number;
  resource: string;
  type: StoredEventType;
  /** The object as written (for DELETED: its last state, carrying the deletion's resourceVersion). */
  object: KubeObject;
  /** The state before this write, so a watch with a selector can tell an object leaving it (sent as DELETED). */
  previous: KubeObject | undefined;
}

export function objectKey(obj: KubeObject): string {
  return obj.metadata.namespace === undefined ? obj.metadata.name : `${obj.metadata.namespace}/${obj.metadata.name}`;
}

export function apiVersionOf(t: ResourceType): string {
  return t.group === '' ? t.version : `${t.group}/${t.version}`;
}

export class StoreError extends Error {
  constructor(readonly code: 404 | 409, readonly reason: 'NotFound' | 'AlreadyExists', message: string) {
    super(message);
  }
}

export class FakeResourceStore {
  #rv = 1;
  readonly #objects = new Map<string, Map<string, KubeObject>>();
  #log: StoredEvent[] = [];
  /** Events with rv ≤ this are gone from the log: a watch from before it gets 410 Expired. */
  #compactedRv = 1;
  readonly #listeners = new Set<(e: StoredEvent) => void>();
  /** Oldest events beyond this many are compacted away on write (etcd keeps ~5 minutes; tests choose a count). */
  historyLimit = 100_000;

  get resourceVersion(): number {
    return this.#rv;
  }

  get compactedRv(): number {
    return this.#compactedRv;
  }

  type(resource: string): ResourceType {
    const t = RESOURCE_TYPES.find((r) => r.resource === resource);
    if (t === undefined) throw new Error(`unknown resource ${resource}`);
    return t;
  }

  #bucket(resource: string): Map<string, KubeObject> {
    let m = this.#objects.get(resource);
    if (m === undefined) this.#objects.set(resource, (m = new Map<string, KubeObject>()));
    return m;
  }

  /** Current objects of a resource, sorted by key (the order etcd range reads return). */
  list(resource: string): KubeObject[] {
    return [...this.#bucket(resource).entries()].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)).map(([, o]) => o);
  }

  get(resource: string, namespace: string | undefined, name: string): KubeObject | undefined {
    return this.#bucket(resource).get(namespace === undefined ? name : `${namespace}/${name}`);
  }

  create(resource: string, input: KubeObject): KubeObject {
    const key = objectKey(input);
    if (this.#bucket(resource).has(key)) throw new StoreError(409, 'AlreadyExists', `${resource} "${input.metadata.name}" already exists`);
    return this.#write(resource, 'ADDED', { ...input, metadata: { ...input.metadata, uid: input.metadata.uid ?? randomUUID(), creationTimestamp: new Date().toISOString() } }, undefined);
  }

  update(resource: string, input: KubeObject): KubeObject {
    const previous = this.#bucket(resource).get(objectKey(input));
    if (previous === undefined) throw new StoreError(404, 'NotFound', `${resource} "${input.metadata.name}" not found`);
    return this.#write(resource, 'MODIFIED', { ...input, metadata: { ...previous.metadata, ...input.metadata, uid: previous.metadata.uid } }, previous);
  }

  /** Create or update: what tests use to put an object into a state. */
  apply(resource: string, input: KubeObject): KubeObject {
    return this.#bucket(resource).has(objectKey(input)) ? this.update(resource, input) : this.create(resource, input);
  }

  delete(resource: string, namespace: string | undefined, name: string): KubeObject {
    const previous = this.get(resource, namespace, name);
    if (previous === undefined) throw new StoreError(404, 'NotFound', `${resource} "${name}" not found`);
    return this.#write(resource, 'DELETED', previous, previous);
  }

  /**
   * Loads many objects at one resourceVersion without logging an event for each (the scale mode's initial state):
   * a watch from before this RV is then too old, as after an etcd compaction.
   */
  bulkLoad(resource: string, objects: Iterable<KubeObject>): void {
    const rv = String(++this.#rv);
    const bucket = this.#bucket(resource);
    for (const o of objects) bucket.set(objectKey(o), Object.freeze({ ...o, metadata: { uid: randomUUID(), ...o.metadata, resourceVersion: rv } }));
    this.compact(this.#rv);
  }

  #write(resource: string, type: StoredEventType, input: KubeObject, previous: KubeObject | undefined): KubeObject {
    const t = this.type(resource);
    const rv = ++this.#rv;
    const object: KubeObject = Object.freeze({ ...input, apiVersion: apiVersionOf(t), kind: t.kind, metadata: { ...input.metadata, resourceVersion: String(rv) } });
    if (type === 'DELETED') this.#bucket(resource).delete(objectKey(object));
    else this.#bucket(resource).set(objectKey(object), object);
    const event: StoredEvent = { rv, resource, type, object, previous };
    this.#log.push(event);
    if (this.#log.length > this.historyLimit) this.compact(this.#log[this.#log.length - this.historyLimit]?.rv ?? rv);
    for (const l of this.#listeners) l(event);
    return object;
  }

  /** Drops events up to `rv` from the log (what etcd compaction does to watch history). */
  compact(rv: number): void {
    this.#compactedRv = Math.max(this.#compactedRv, rv);
    const keep = this.#log.findIndex((e) => e.rv > this.#compactedRv);
    this.#log = keep < 0 ? [] : this.#log.slice(keep);
  }

  /** Events after `rv`, or undefined when some of them were compacted away (the watch must answer 410). */
  eventsAfter(rv: number): StoredEvent[] | undefined {
    if (rv < this.#compactedRv) return undefined;
    const from = this.#log.findIndex((e) => e.rv > rv);
    return from < 0 ? [] : this.#log.slice(from);
  }

  subscribe(listener: (e: StoredEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}
