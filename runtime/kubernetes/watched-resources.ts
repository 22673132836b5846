/**
 * What the Kubernetes source reads from the API server, and the only writes it makes: the single list that the
 * watcher's clients are built from and that deploy/'s RBAC is checked against (every verb used is granted, nothing more).
 */

/** One API resource and the verbs weft uses on it. `group` is '' for the core API. */
export interface WatchedResource {
  readonly group: string;
  readonly version: string;
  readonly resource: string;
  readonly verbs: readonly string[];
  /** Namespaced resources are watched cluster-wide (all namespaces) unless a field selector narrows them. */
  readonly namespaced: boolean;
  /** Optional resources (CRDs) may be absent from a cluster: a 404 on their list is logged once, not retried in a loop. */
  readonly optional: boolean;
  /** Only objects this label selector matches are listed and watched. */
  readonly labelSelector?: string;
}

/** The label the EndpointSlice controller puts on the slices it derives from a Service's selector. */
export const MANAGED_BY = 'endpointslice.kubernetes.io/managed-by';
export const ENDPOINTSLICE_CONTROLLER = 'endpointslice-controller.k8s.io';

const READ = ['get', 'list', 'watch'] as const;

export const WATCHED_RESOURCES: readonly WatchedResource[] = [
  // This node's Pods carry its local workloads; the other nodes' Pods give remote identity and mesh enrollment, and
  // (matched by Service selectors) every Service's endpoints.
  { group: '', version: 'v1', resource: 'pods', verbs: READ, namespaced: true, optional: false },
  // Slices the controller derives from selectors repeat what the Pods say; the others (a Service without a selector:
  // hand-written slices, or mirrored from hand-written Endpoints) are the only word on those Services' endpoints.
  { group: 'discovery.k8s.io', version: 'v1', resource: 'endpointslices', verbs: READ, namespaced: true, optional: false, labelSelector: `${MANAGED_BY}!=${ENDPOINTSLICE_CONTROLLER}` },
  { group: '', version: 'v1', resource: 'services', verbs: READ, namespaced: true, optional: false },
  { group: '', version: 'v1', resource: 'namespaces', verbs: READ, namespaced: false, optional: false },
  { group: 'extensions.istio.io', version: 'v1alpha1', resource: 'wasmplugins', verbs: READ, namespaced: true, optional: true },
  { group: 'security.istio.io', version: 'v1', resource: 'authorizationpolicies', verbs: READ, namespaced: true, optional: true },
  // Problems with one object (a bad annotation, a WasmPlugin with a bad sha256) are reported on it as an Event.
  { group: '', version: 'v1', resource: 'events', verbs: ['create', 'patch'], namespaced: true, optional: false },
];
