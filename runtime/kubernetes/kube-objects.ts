/** Slim shapes of the objects weft keeps and the strip functions that cut each object to them as it arrives (managedFields, container specs and status details never stay in memory). */
import type { RawObject, Stripped } from './kube-reflector.js';
import { intern, internMap } from '../state/string-pool.js';

type Labels = Record<string, string>;

export interface SlimPod extends Stripped {
  labels: Labels;
  /** Only `weft.dev/*` and `istio.io/*` / `sidecar.istio.io/*` annotations: the ones the mapping reads. */
  annotations: Labels;
  serviceAccount: string;
  nodeName: string | undefined;
  hostNetwork: boolean;
  phase: string | undefined;
  ips: string[];
  ready: boolean;
  /** Named container ports, for Services whose targetPort is a name. */
  ports: Record<string, number>;
}

export interface SlimService extends Stripped {
  annotations: Labels;
  labels: Labels;
  type: string;
  clusterIps: string[];
  selector: Labels | undefined;
  ports: { name: string | undefined; port: number; targetPort: number | string | undefined; protocol: string; appProtocol: string | undefined }[];
}

export interface SlimNamespace extends Stripped {
  labels: Labels;
  annotations: Labels;
}

/** Istio CRDs are kept with their spec as written: they are few and the mapping validates them field by field. */
export interface SlimCustom extends Stripped {
  labels: Labels;
  spec: Record<string, unknown>;
}

function meta(raw: RawObject): Stripped {
  return { name: raw.metadata.name, namespace: raw.metadata.namespace, resourceVersion: raw.metadata.resourceVersion ?? '' };
}

function stringMap(v: unknown): Labels {
  return v !== null && typeof v === 'object' ? (v as Labels) : {};
}

const KEPT_ANNOTATION = /^(weft\.dev\/|istio\.io\/|sidecar\.istio\.io\/status$|ambient\.istio\.io\/)/;

export function keptAnnotations(v: unknown): Labels {
  const out: Labels = {};
  for (const [k, val] of Object.entries(stringMap(v))) if (KEPT_ANNOTATION.test(k) && typeof val === 'string') out[k] = val;
  return out;
}

interface RawPod {
  spec?: { serviceAccountName?: string; nodeName?: string; hostNetwork?: boolean; containers?: { ports?: { name?: string; containerPort?: number; protocol?: string }[] }[] };
  status?: { phase?: string; podIP?: string; podIPs?: { ip: string }[]; conditions?: { type: string; status: string }[] };
}

export function stripPod(raw: RawObject): SlimPod {
  const { spec = {}, status = {} } = raw as RawPod;
  const ports: Record<string, number> = {};
  for (const c of spec.containers ?? []) for (const p of c.ports ?? []) if (p.name !== undefined && p.containerPort !== undefined && (p.protocol ?? 'TCP') === 'TCP') ports[p.name] = p.containerPort;
  const ips = status.podIPs !== undefined && status.podIPs.length > 0 ? status.podIPs.map((p) => p.ip) : status.podIP === undefined || status.podIP === '' ? [] : [status.podIP];
  // Kept for as long as the pod lives (150,000 of them): repeated strings shared, the rest of the object left to GC.
  return {
    name: raw.metadata.name,
    namespace: raw.metadata.namespace === undefined ? undefined : intern(raw.metadata.namespace),
    resourceVersion: raw.metadata.resourceVersion ?? '',
    labels: internMap(stringMap(raw.metadata.labels)),
    annotations: keptAnnotations(raw.metadata.annotations),
    serviceAccount: intern(spec.serviceAccountName ?? 'default'),
    nodeName: spec.nodeName === undefined ? undefined : intern(spec.nodeName),
    hostNetwork: spec.hostNetwork === true,
    phase: status.phase === undefined ? undefined : intern(status.phase),
    ips,
    ready: (status.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True'),
    ports,
  };
}

interface RawService {
  spec?: { type?: string; clusterIP?: string; clusterIPs?: string[]; selector?: Labels; ports?: { name?: string; port: number; targetPort?: number | string; protocol?: string; appProtocol?: string }[] };
}

export function stripService(raw: RawObject): SlimService {
  const { spec = {} } = raw as RawService;
  const ips = spec.clusterIPs ?? (spec.clusterIP === undefined ? [] : [spec.clusterIP]);
  return {
    ...meta(raw),
    labels: stringMap(raw.metadata.labels),
    annotations: keptAnnotations(raw.metadata.annotations),
    type: spec.type ?? 'ClusterIP',
    clusterIps: ips.filter((ip) => ip !== '' && ip !== 'None'),
    selector: spec.selector === undefined || Object.keys(spec.selector).length === 0 ? undefined : spec.selector,
    ports: (spec.ports ?? []).map((p) => ({ name: p.name, port: p.port, targetPort: p.targetPort, protocol: p.protocol ?? 'TCP', appProtocol: p.appProtocol })),
  };
}

export function stripNamespace(raw: RawObject): SlimNamespace {
  return { ...meta(raw), labels: stringMap(raw.metadata.labels), annotations: keptAnnotations(raw.metadata.annotations) };
}

export function stripCustom(raw: RawObject): SlimCustom {
  return { ...meta(raw), labels: stringMap(raw.metadata.labels), spec: stringMap(raw.spec) };
}

/** An EndpointSlice as weft uses it: the Service it belongs to, its ports and each endpoint's addresses, readiness and node. */
export interface SlimEndpointSlice extends Stripped {
  service: string | undefined;
  ports: { name: string | undefined; port: number; protocol: string }[];
  endpoints: { addresses: string[]; ready: boolean; nodeName: string | undefined }[];
}

interface RawEndpointSlice {
  endpoints?: { addresses?: string[]; conditions?: { ready?: boolean }; nodeName?: string }[];
  ports?: { name?: string; port?: number; protocol?: string }[] | null;
}

export function stripEndpointSlice(raw: RawObject): SlimEndpointSlice {
  const { endpoints = [], ports } = raw as RawEndpointSlice;
  return {
    ...meta(raw),
    service: stringMap(raw.metadata.labels)['kubernetes.io/service-name'],
    ports: (ports ?? []).flatMap((p) => (p.port === undefined ? [] : [{ name: p.name === '' ? undefined : p.name, port: p.port, protocol: p.protocol ?? 'TCP' }])),
    // An unset ready condition means ready (discovery.k8s.io/v1 EndpointConditions).
    endpoints: endpoints.map((e) => ({ addresses: e.addresses ?? [], ready: e.conditions?.ready !== false, nodeName: e.nodeName })),
  };
}

/** Each watched resource's strip function, by resource name (the list thread finds its own by name). */
export const STRIP_BY_RESOURCE: Readonly<Record<string, (raw: RawObject) => Stripped>> = { pods: stripPod, endpointslices: stripEndpointSlice, services: stripService, namespaces: stripNamespace, wasmplugins: stripCustom, authorizationpolicies: stripCustom };

/**
 * A pod stripped in another thread arrives with its own copies of every string: the repeated ones are swapped for this
 * thread's pooled copies, as `stripPod` does here. The object is made anew as a literal of stripPod's shape: a
 * deserialized one keeps its fields out of line, ~100 bytes more per pod (15 MB at 150,000).
 */
function adoptPod(p: SlimPod): SlimPod {
  return {
    name: p.name,
    namespace: p.namespace === undefined ? undefined : intern(p.namespace),
    resourceVersion: p.resourceVersion,
    labels: internMap(p.labels),
    annotations: p.annotations,
    serviceAccount: intern(p.serviceAccount),
    nodeName: p.nodeName === undefined ? undefined : intern(p.nodeName),
    hostNetwork: p.hostNetwork,
    phase: p.phase === undefined ? undefined : intern(p.phase),
    ips: p.ips,
    ready: p.ready,
    ports: p.ports,
  };
}

/** What an object stripped in the list thread needs on arrival here (pods: their strings pooled); others as they are. */
export function adoptStripped(resource: string, o: Stripped): Stripped {
  return resource === 'pods' ? adoptPod(o as SlimPod) : o;
}
