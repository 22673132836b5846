/**
 * The protobuf forms of the built-in objects weft keeps (Pods, Services, Namespaces, EndpointSlices), cut to the fields
 * weft reads, and their conversion to the same slim shapes the JSON path's strip functions make. The schema lists only
 * those fields (field numbers from k8s.io/api core/v1 and discovery/v1 and k8s.io/apimachinery meta/v1 generated.proto):
 * protobufjs skips every other field by its length prefix (container specs, managedFields, status details), so decoding
 * costs what weft uses, not what the object holds.
 */
import protobuf from 'protobufjs';
import type { Stripped } from './kube-reflector.js';
import { keptAnnotations, type SlimEndpointSlice, type SlimNamespace, type SlimPod, type SlimService } from './kube-objects.js';
import { intern, internMap } from '../state/string-pool.js';

const SCHEMA = `
syntax = "proto2";
package weft.k8s;

// k8s.io/apimachinery/pkg/runtime
message TypeMeta { optional string apiVersion = 1; optional string kind = 2; }
message Unknown { optional TypeMeta typeMeta = 1; optional bytes raw = 2; optional string contentEncoding = 3; optional string contentType = 4; }
message RawExtension { optional bytes raw = 1; }

// k8s.io/apimachinery/pkg/apis/meta/v1
message ListMeta { optional string resourceVersion = 2; optional string continue = 3; optional int64 remainingItemCount = 4; }
message ObjectMeta {
  optional string name = 1; optional string namespace = 3; optional string resourceVersion = 6;
  map<string, string> labels = 11; map<string, string> annotations = 12;
}
message Status { optional string status = 2; optional string message = 3; optional string reason = 4; optional int32 code = 6; }
message WatchEvent { optional string type = 1; optional RawExtension object = 2; }

// k8s.io/apimachinery/pkg/util/intstr
message IntOrString { optional int64 type = 1; optional int32 intVal = 2; optional string strVal = 3; }

// k8s.io/api/core/v1
message ContainerPort { optional string name = 1; optional int32 containerPort = 3; optional string protocol = 4; }
message Container { repeated ContainerPort ports = 6; }
message PodSpec { repeated Container containers = 2; optional string serviceAccountName = 8; optional string nodeName = 10; optional bool hostNetwork = 11; }
message PodCondition { optional string type = 1; optional string status = 2; }
message PodIP { optional string ip = 1; }
message PodStatus { optional string phase = 1; repeated PodCondition conditions = 2; optional string podIP = 6; repeated PodIP podIPs = 12; }
message Pod { optional ObjectMeta metadata = 1; optional PodSpec spec = 2; optional PodStatus status = 3; }
message PodList { optional ListMeta metadata = 1; repeated Pod items = 2; }
message ServicePort { optional string name = 1; optional string protocol = 2; optional int32 port = 3; optional IntOrString targetPort = 4; optional string appProtocol = 6; }
message ServiceSpec { repeated ServicePort ports = 1; map<string, string> selector = 2; optional string clusterIP = 3; optional string type = 4; repeated string clusterIPs = 18; }
message Service { optional ObjectMeta metadata = 1; optional ServiceSpec spec = 2; }
message ServiceList { optional ListMeta metadata = 1; repeated Service items = 2; }
message Namespace { optional ObjectMeta metadata = 1; }
message NamespaceList { optional ListMeta metadata = 1; repeated Namespace items = 2; }

// k8s.io/api/discovery/v1
message EndpointConditions { optional bool ready = 1; }
message Endpoint { repeated string addresses = 1; optional EndpointConditions conditions = 2; optional string nodeName = 6; }
message EndpointPort { optional string name = 1; optional string protocol = 2; optional int32 port = 3; }
message EndpointSlice { optional ObjectMeta metadata = 1; repeated Endpoint endpoints = 2; repeated EndpointPort ports = 3; }
message EndpointSliceList { optional ListMeta metadata = 1; repeated EndpointSlice items = 2; }
`;

const root = protobuf.parse(SCHEMA, { keepCase: true }).root;
const type = (name: string): protobuf.Type => root.lookupType(`weft.k8s.${name}`);

export const UNKNOWN = type('Unknown');
export const LIST_META = type('ListMeta');
export const STATUS = type('Status');
export const WATCH_EVENT = type('WatchEvent');

type Labels = Record<string, string>;

/**
 * Decoded messages: every string field is present on the wire (Go writes empty strings too), so '' means unset, as JSON's
 * omitempty has it; an absent sub-message reads as null (protobufjs's default), an absent pointer field as not own.
 */
interface PMeta { name: string; namespace: string; resourceVersion: string; labels: Labels; annotations: Labels }
interface PPod {
  metadata?: PMeta;
  spec?: { containers: { ports: { name: string; containerPort: number; protocol: string }[] }[]; serviceAccountName: string; nodeName: string; hostNetwork: boolean };
  status?: { phase: string; conditions: { type: string; status: string }[]; podIP: string; podIPs: { ip: string }[] };
}
interface PService {
  metadata?: PMeta;
  spec?: { ports: { name: string; protocol: string; port: number; targetPort?: { type: unknown; intVal: number; strVal: string } | null; appProtocol: string }[]; selector: Labels; clusterIP: string; type: string; clusterIPs: string[] };
}
interface PEndpointSlice {
  metadata?: PMeta;
  endpoints: { addresses: string[]; conditions?: { ready?: boolean } | null; nodeName: string }[];
  ports: { name: string; protocol: string; port?: number }[];
}

const opt = (s: string | undefined): string | undefined => (s === undefined || s === '' ? undefined : s);
const EMPTY_META: PMeta = { name: '', namespace: '', resourceVersion: '', labels: {}, annotations: {} };

/** An int64 as protobufjs returns it (a Long when the long package is loaded). */
export function int64(v: unknown): number {
  return typeof v === 'number' ? v : typeof v === 'object' && v !== null && 'toNumber' in v ? (v as { toNumber(): number }).toNumber() : Number(v);
}

function meta(m: PMeta | undefined): Stripped {
  const md = m ?? EMPTY_META;
  return { name: md.name, namespace: opt(md.namespace), resourceVersion: md.resourceVersion };
}

function podFromProto(p: PPod): SlimPod {
  const md = p.metadata ?? EMPTY_META;
  const spec = p.spec;
  const status = p.status;
  const ports: Record<string, number> = {};
  for (const c of spec?.containers ?? []) for (const port of c.ports) if (port.name !== '' && (opt(port.protocol) ?? 'TCP') === 'TCP') ports[port.name] = port.containerPort;
  const podIps = status?.podIPs ?? [];
  const ips = podIps.length > 0 ? podIps.map((x) => x.ip) : opt(status?.podIP) === undefined ? [] : [status?.podIP as string];
  const namespace = opt(md.namespace);
  const nodeName = opt(spec?.nodeName);
  const phase = opt(status?.phase);
  // The same object literal as stripPod makes (same shape and field order, repeated strings pooled).
  return {
    name: md.name,
    namespace: namespace === undefined ? undefined : intern(namespace),
    resourceVersion: md.resourceVersion,
    labels: internMap(md.labels),
    annotations: keptAnnotations(md.annotations),
    serviceAccount: intern(opt(spec?.serviceAccountName) ?? 'default'),
    nodeName: nodeName === undefined ? undefined : intern(nodeName),
    hostNetwork: spec?.hostNetwork === true,
    phase: phase === undefined ? undefined : intern(phase),
    ips,
    ready: (status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True'),
    ports,
  };
}

function serviceFromProto(s: PService): SlimService {
  const spec = s.spec;
  const ips = spec === undefined ? [] : spec.clusterIPs.length > 0 ? spec.clusterIPs : opt(spec.clusterIP) === undefined ? [] : [spec.clusterIP];
  const selector = spec?.selector ?? {};
  return {
    ...meta(s.metadata),
    labels: { ...(s.metadata?.labels ?? {}) },
    annotations: keptAnnotations(s.metadata?.annotations),
    type: opt(spec?.type) ?? 'ClusterIP',
    clusterIps: ips.filter((ip) => ip !== '' && ip !== 'None'),
    selector: Object.keys(selector).length === 0 ? undefined : { ...selector },
    ports: (spec?.ports ?? []).map((p) => ({
      name: opt(p.name),
      port: p.port,
      // IntOrString: type 0 an int, 1 a string. Go writes the field even when unset (a zero int), which means the Service's port.
      targetPort: p.targetPort == null ? undefined : int64(p.targetPort.type) === 1 ? p.targetPort.strVal : p.targetPort.intVal === 0 ? undefined : p.targetPort.intVal,
      protocol: opt(p.protocol) ?? 'TCP',
      appProtocol: opt(p.appProtocol),
    })),
  };
}

function namespaceFromProto(n: { metadata?: PMeta }): SlimNamespace {
  return { ...meta(n.metadata), labels: { ...(n.metadata?.labels ?? {}) }, annotations: keptAnnotations(n.metadata?.annotations) };
}

function endpointSliceFromProto(e: PEndpointSlice): SlimEndpointSlice {
  return {
    ...meta(e.metadata),
    service: e.metadata?.labels['kubernetes.io/service-name'],
    ports: e.ports.flatMap((p) => (p.port === undefined || !Object.hasOwn(p, 'port') ? [] : [{ name: opt(p.name), port: p.port, protocol: opt(p.protocol) ?? 'TCP' }])),
    // An unset ready condition means ready (discovery.k8s.io/v1 EndpointConditions; ready is a pointer in Go, absent when nil).
    endpoints: e.endpoints.map((x) => ({ addresses: [...x.addresses], ready: x.conditions == null || !Object.hasOwn(x.conditions, 'ready') || x.conditions.ready !== false, nodeName: opt(x.nodeName) })),
  };
}

export interface ProtoCodec {
  /** The object's message (watch events carry one each). */
  item: protobuf.Type;
  /** The list's message: ListMeta then the items. */
  list: protobuf.Type;
  /** The list's kind, as the envelope's TypeMeta names it. */
  listKind: string;
  fromProto(message: unknown): Stripped;
}

/** The built-in resources the API server serves as protobuf; CRDs (WasmPlugin, AuthorizationPolicy) are JSON only. */
export const PROTO_BY_RESOURCE: Readonly<Record<string, ProtoCodec>> = {
  pods: { item: type('Pod'), list: type('PodList'), listKind: 'PodList', fromProto: (m) => podFromProto(m as PPod) },
  services: { item: type('Service'), list: type('ServiceList'), listKind: 'ServiceList', fromProto: (m) => serviceFromProto(m as PService) },
  namespaces: { item: type('Namespace'), list: type('NamespaceList'), listKind: 'NamespaceList', fromProto: (m) => namespaceFromProto(m as { metadata?: PMeta }) },
  endpointslices: { item: type('EndpointSlice'), list: type('EndpointSliceList'), listKind: 'EndpointSliceList', fromProto: (m) => endpointSliceFromProto(m as PEndpointSlice) },
};
