/**
 * The fake API server's protobuf encoding of the built-in types it stores, as kube-apiserver writes it
 * (k8s.io/apimachinery runtime/serializer/protobuf): the magic `k8s\0`, a runtime.Unknown envelope {typeMeta, raw,
 * contentEncoding, contentType}, lists as {ListMeta, items}, and watch frames (4-byte big-endian length, a WatchEvent
 * encoded without the envelope whose object is an enveloped object). Field numbers follow k8s.io/api core/v1 and
 * discovery/v1 and k8s.io/apimachinery meta/v1 generated.proto. The schema covers the fields the fake's objects use
 * (tests and the scale mode, container specs and managedFields included, so a client is tested against full-sized
 * objects); a stored field it lacks throws rather than being dropped silently. One simplification: Go writes every
 * non-pointer string and number even when empty; the fake writes only the fields an object has (clients treat an empty
 * string as unset either way, as JSON's omitempty does).
 */
import protobuf from 'protobufjs';

const SCHEMA = `
syntax = "proto2";
package fake;

message TypeMeta { optional string apiVersion = 1; optional string kind = 2; }
message Unknown { optional TypeMeta typeMeta = 1; optional bytes raw = 2; optional string contentEncoding = 3; optional string contentType = 4; }
message RawExtension { optional bytes raw = 1; }

message Time { optional int64 seconds = 1; optional int32 nanos = 2; }
message MicroTime { optional int64 seconds = 1; optional int32 nanos = 2; }
message FieldsV1 { optional bytes Raw = 1; }
message ListMeta { optional string selfLink = 1; optional string resourceVersion = 2; optional string continue = 3; optional int64 remainingItemCount = 4; }
message ManagedFieldsEntry { optional string manager = 1; optional string operation = 2; optional string apiVersion = 3; optional Time time = 4; optional string fieldsType = 6; optional FieldsV1 fieldsV1 = 7; optional string subresource = 8; }
message OwnerReference { optional string kind = 1; optional string name = 3; optional string uid = 4; optional string apiVersion = 5; optional bool controller = 6; optional bool blockOwnerDeletion = 7; }
message ObjectMeta {
  optional string name = 1; optional string generateName = 2; optional string namespace = 3; optional string selfLink = 4;
  optional string uid = 5; optional string resourceVersion = 6; optional int64 generation = 7; optional Time creationTimestamp = 8;
  optional Time deletionTimestamp = 9; optional int64 deletionGracePeriodSeconds = 10; map<string, string> labels = 11;
  map<string, string> annotations = 12; repeated OwnerReference ownerReferences = 13; repeated string finalizers = 14;
  repeated ManagedFieldsEntry managedFields = 17;
}
message StatusCause { optional string reason = 1; optional string message = 2; optional string field = 3; }
message StatusDetails { optional string name = 1; optional string group = 2; optional string kind = 3; repeated StatusCause causes = 4; optional int32 retryAfterSeconds = 5; optional string uid = 6; }
message Status { optional ListMeta metadata = 1; optional string status = 2; optional string message = 3; optional string reason = 4; optional StatusDetails details = 5; optional int32 code = 6; }
message WatchEvent { optional string type = 1; optional RawExtension object = 2; }

message Quantity { optional string string = 1; }
message IntOrString { optional int64 type = 1; optional int32 intVal = 2; optional string strVal = 3; }

message ObjectFieldSelector { optional string apiVersion = 1; optional string fieldPath = 2; }
message EnvVarSource { optional ObjectFieldSelector fieldRef = 1; }
message EnvVar { optional string name = 1; optional string value = 2; optional EnvVarSource valueFrom = 3; }
message ResourceRequirements { map<string, Quantity> limits = 1; map<string, Quantity> requests = 2; }
message VolumeMount { optional string name = 1; optional bool readOnly = 2; optional string mountPath = 3; optional string subPath = 4; }
message ExecAction { repeated string command = 1; }
message HTTPGetAction { optional string path = 1; optional IntOrString port = 2; optional string host = 3; optional string scheme = 4; }
message TCPSocketAction { optional IntOrString port = 1; optional string host = 2; }
message ProbeHandler { optional ExecAction exec = 1; optional HTTPGetAction httpGet = 2; optional TCPSocketAction tcpSocket = 3; }
message Probe {
  optional ProbeHandler handler = 1; optional int32 initialDelaySeconds = 2; optional int32 timeoutSeconds = 3; optional int32 periodSeconds = 4;
  optional int32 successThreshold = 5; optional int32 failureThreshold = 6;
}
message ContainerPort { optional string name = 1; optional int32 hostPort = 2; optional int32 containerPort = 3; optional string protocol = 4; optional string hostIP = 5; }
message Container {
  optional string name = 1; optional string image = 2; repeated string command = 3; repeated string args = 4; optional string workingDir = 5;
  repeated ContainerPort ports = 6; repeated EnvVar env = 7; optional ResourceRequirements resources = 8; repeated VolumeMount volumeMounts = 9;
  optional Probe livenessProbe = 10; optional Probe readinessProbe = 11; optional string imagePullPolicy = 14;
}
message ServiceAccountTokenProjection { optional string audience = 1; optional int64 expirationSeconds = 2; optional string path = 3; }
message VolumeProjection { optional ServiceAccountTokenProjection serviceAccountToken = 4; }
message ProjectedVolumeSource { repeated VolumeProjection sources = 1; optional int32 defaultMode = 2; }
message EmptyDirVolumeSource { optional string medium = 1; optional Quantity sizeLimit = 2; }
message VolumeSource { optional EmptyDirVolumeSource emptyDir = 2; optional ProjectedVolumeSource projected = 26; }
message Volume { optional string name = 1; optional VolumeSource volumeSource = 2; }
message PodSpec {
  repeated Volume volumes = 1; repeated Container containers = 2; optional string restartPolicy = 3; optional int64 terminationGracePeriodSeconds = 4;
  optional string dnsPolicy = 6; map<string, string> nodeSelector = 7; optional string serviceAccountName = 8; optional string serviceAccount = 9;
  optional string nodeName = 10; optional bool hostNetwork = 11; optional string hostname = 16; optional string subdomain = 17;
  optional string schedulerName = 19; repeated Container initContainers = 20;
}
message PodCondition { optional string type = 1; optional string status = 2; optional Time lastProbeTime = 3; optional Time lastTransitionTime = 4; optional string reason = 5; optional string message = 6; }
message PodIP { optional string ip = 1; }
message ContainerStateWaiting { optional string reason = 1; optional string message = 2; }
message ContainerStateRunning { optional Time startedAt = 1; }
message ContainerStateTerminated { optional int32 exitCode = 1; optional int32 signal = 2; optional string reason = 3; optional string message = 4; optional Time startedAt = 5; optional Time finishedAt = 6; optional string containerID = 7; }
message ContainerState { optional ContainerStateWaiting waiting = 1; optional ContainerStateRunning running = 2; optional ContainerStateTerminated terminated = 3; }
message ContainerStatus {
  optional string name = 1; optional ContainerState state = 2; optional ContainerState lastState = 3; optional bool ready = 4; optional int32 restartCount = 5;
  optional string image = 6; optional string imageID = 7; optional string containerID = 8; optional bool started = 9;
}
message PodStatus {
  optional string phase = 1; repeated PodCondition conditions = 2; optional string message = 3; optional string reason = 4; optional string hostIP = 5;
  optional string podIP = 6; optional Time startTime = 7; repeated ContainerStatus containerStatuses = 8; optional string qosClass = 9;
  repeated ContainerStatus initContainerStatuses = 10; repeated PodIP podIPs = 12;
}
message Pod { optional ObjectMeta metadata = 1; optional PodSpec spec = 2; optional PodStatus status = 3; }
message PodList { optional ListMeta metadata = 1; repeated Pod items = 2; }

message ServicePort { optional string name = 1; optional string protocol = 2; optional int32 port = 3; optional IntOrString targetPort = 4; optional int32 nodePort = 5; optional string appProtocol = 6; }
message ServiceSpec {
  repeated ServicePort ports = 1; map<string, string> selector = 2; optional string clusterIP = 3; optional string type = 4; repeated string externalIPs = 5;
  optional string sessionAffinity = 7; optional string externalName = 10; optional bool publishNotReadyAddresses = 13; optional string ipFamilyPolicy = 17;
  repeated string clusterIPs = 18; repeated string ipFamilies = 19;
}
message ServiceStatus {}
message Service { optional ObjectMeta metadata = 1; optional ServiceSpec spec = 2; optional ServiceStatus status = 3; }
message ServiceList { optional ListMeta metadata = 1; repeated Service items = 2; }

message NamespaceSpec { repeated string finalizers = 1; }
message NamespaceStatus { optional string phase = 1; }
message Namespace { optional ObjectMeta metadata = 1; optional NamespaceSpec spec = 2; optional NamespaceStatus status = 3; }
message NamespaceList { optional ListMeta metadata = 1; repeated Namespace items = 2; }

message ObjectReference { optional string kind = 1; optional string namespace = 2; optional string name = 3; optional string uid = 4; optional string apiVersion = 5; optional string resourceVersion = 6; optional string fieldPath = 7; }
message EndpointConditions { optional bool ready = 1; optional bool serving = 2; optional bool terminating = 3; }
message Endpoint { repeated string addresses = 1; optional EndpointConditions conditions = 2; optional string hostname = 3; optional ObjectReference targetRef = 4; optional string nodeName = 6; optional string zone = 7; }
message EndpointPort { optional string name = 1; optional string protocol = 2; optional int32 port = 3; optional string appProtocol = 4; }
message EndpointSlice { optional ObjectMeta metadata = 1; repeated Endpoint endpoints = 2; repeated EndpointPort ports = 3; optional string addressType = 4; }
message EndpointSliceList { optional ListMeta metadata = 1; repeated EndpointSlice items = 2; }
`;

const root = protobuf.parse(SCHEMA, { keepCase: true }).root;
const type = (name: string): protobuf.Type => root.lookupType(`fake.${name}`);

export const PROTOBUF = 'application/vnd.kubernetes.protobuf';
const MAGIC = Buffer.from([0x6b, 0x38, 0x73, 0x00]);

/** Kinds the fake serves as protobuf (the built-in ones it stores; CRDs are JSON only, as on a real API server). */
const MESSAGES: Readonly<Record<string, { item: protobuf.Type; list: protobuf.Type }>> = {
  Pod: { item: type('Pod'), list: type('PodList') },
  Service: { item: type('Service'), list: type('ServiceList') },
  Namespace: { item: type('Namespace'), list: type('NamespaceList') },
  EndpointSlice: { item: type('EndpointSlice'), list: type('EndpointSliceList') },
};

export function servesProtobuf(kind: string): boolean {
  return MESSAGES[kind] !== undefined;
}

/** JSON inlines these embedded messages (Go's `json:",inline"`): their fields appear in the parent's JSON object. */
const INLINE: Readonly<Record<string, string>> = { Volume: 'volumeSource', Probe: 'handler' };

function message(t: protobuf.Type, json: unknown, path: string): Record<string, unknown> {
  if (json === null || typeof json !== 'object' || Array.isArray(json)) throw new Error(`fake protobuf: ${path} is not an object`);
  const out: Record<string, unknown> = {};
  const inlineName = INLINE[t.name];
  const inline = inlineName === undefined ? undefined : (t.fields[inlineName]?.resolve().resolvedType as protobuf.Type);
  for (const [k, v] of Object.entries(json)) {
    if (v === undefined || v === null) continue;
    const field = t.fields[k];
    if (field !== undefined) {
      out[k] = value(field, v, `${path}.${k}`);
      continue;
    }
    const inner = inline?.fields[k];
    if (inline !== undefined && inlineName !== undefined && inner !== undefined) {
      const holder = (out[inlineName] ??= {}) as Record<string, unknown>;
      holder[k] = value(inner, v, `${path}.${k}`);
      continue;
    }
    throw new Error(`fake protobuf: the schema has no field ${path}.${k} (${t.name}); add it with its generated.proto number`);
  }
  return out;
}

function single(field: protobuf.Field, v: unknown, path: string): unknown {
  const t = field.resolve().resolvedType;
  if (!(t instanceof protobuf.Type)) return v;
  switch (t.name) {
    case 'Time':
    case 'MicroTime': {
      const ms = Date.parse(String(v));
      if (!Number.isFinite(ms)) throw new Error(`fake protobuf: ${path} is not an RFC 3339 time`);
      return { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1_000_000 };
    }
    case 'Quantity':
      return { string: String(v) };
    case 'IntOrString':
      return typeof v === 'number' ? { type: 0, intVal: v } : { type: 1, strVal: String(v) };
    case 'FieldsV1':
      return { Raw: Buffer.from(JSON.stringify(v)) };
    case 'RawExtension':
      return { raw: Buffer.from(JSON.stringify(v)) };
    default:
      return message(t, v, path);
  }
}

function value(field: protobuf.Field, v: unknown, path: string): unknown {
  if (field.map) return Object.fromEntries(Object.entries(v as Record<string, unknown>).map(([k, x]) => [k, single(field, x, `${path}[${k}]`)]));
  if (field.repeated) {
    if (!Array.isArray(v)) throw new Error(`fake protobuf: ${path} is not a list`);
    return v.map((x, i) => single(field, x, `${path}[${i}]`));
  }
  return single(field, v, path);
}

/** An object's message (no envelope): its TypeMeta goes to the envelope, the rest to the kind's message. */
export function encodeObject(kind: string, obj: Record<string, unknown>): Buffer {
  const m = MESSAGES[kind];
  if (m === undefined) throw new Error(`fake protobuf: ${kind} is not served as protobuf`);
  const { apiVersion: _a, kind: _k, ...rest } = obj;
  return Buffer.from(m.item.encode(message(m.item, rest, kind)).finish());
}

const varintLength = (n: number): number => (n < 0x80 ? 1 : n < 0x4000 ? 2 : n < 0x200000 ? 3 : n < 0x10000000 ? 4 : 5);

function writeVarint(out: Buffer, at: number, n: number): number {
  let v = n;
  while (v >= 0x80) {
    out[at++] = (v & 0x7f) | 0x80;
    v >>>= 7;
  }
  out[at++] = v;
  return at;
}

/**
 * The bytes of `k8s\0` + Unknown{typeMeta, raw, contentEncoding: '', contentType: ''} (Go writes the empty strings too),
 * where raw is `head` then each of `items` as field 2 (a list's items), as a sequence of buffers that the cached items
 * appear in uncopied: a page of 500 pods is ~750 KB, and assembling each page's copy made the fake's GC, not weft, the
 * cost of a 150,000-pod list.
 */
function envelopeParts(apiVersion: string, kind: string, head: Uint8Array, items: readonly Uint8Array[] = []): Buffer[] {
  const typeMeta = type('TypeMeta').encode({ apiVersion, kind }).finish();
  let rawLength = head.length;
  for (const item of items) rawLength += 1 + varintLength(item.length) + item.length;
  const start = Buffer.allocUnsafe(MAGIC.length + 1 + varintLength(typeMeta.length) + typeMeta.length + 1 + varintLength(rawLength) + head.length);
  let at = MAGIC.copy(start, 0);
  start[at++] = (1 << 3) | 2;
  at = writeVarint(start, at, typeMeta.length);
  at += Buffer.from(typeMeta.buffer, typeMeta.byteOffset, typeMeta.length).copy(start, at);
  start[at++] = (2 << 3) | 2;
  at = writeVarint(start, at, rawLength);
  Buffer.from(head.buffer, head.byteOffset, head.length).copy(start, at);
  // Every item's tag and length in one buffer, each a view of it.
  const prefixes = Buffer.allocUnsafe(items.length * 6);
  const parts: Buffer[] = [start];
  let p = 0;
  for (const item of items) {
    const from = p;
    prefixes[p++] = (2 << 3) | 2;
    p = writeVarint(prefixes, p, item.length);
    parts.push(prefixes.subarray(from, p), Buffer.from(item.buffer, item.byteOffset, item.length));
  }
  parts.push(Buffer.from([(3 << 3) | 2, 0, (4 << 3) | 2, 0]));
  return parts;
}

export function envelope(apiVersion: string, kind: string, raw: Uint8Array): Buffer {
  return Buffer.concat(envelopeParts(apiVersion, kind, raw));
}

/** A list page as buffers to write in order: the enveloped `<Kind>List` {1 metadata, 2 items}, from items already encoded (the fake caches them). */
export function listParts(apiVersion: string, kind: string, metadata: { resourceVersion: string; continue?: string; remainingItemCount?: number }, items: readonly Buffer[]): Buffer[] {
  const list = MESSAGES[kind]?.list;
  if (list === undefined) throw new Error(`fake protobuf: ${kind} is not served as protobuf`);
  return envelopeParts(apiVersion, `${kind}List`, list.encode({ metadata }).finish(), items);
}

export function encodeList(apiVersion: string, kind: string, metadata: { resourceVersion: string; continue?: string; remainingItemCount?: number }, items: readonly Buffer[]): Buffer {
  return Buffer.concat(listParts(apiVersion, kind, metadata, items));
}

export function encodeStatus(status: Record<string, unknown>): Buffer {
  const { apiVersion: _a, kind: _k, ...rest } = status;
  return envelope('v1', 'Status', type('Status').encode(message(type('Status'), rest, 'Status')).finish());
}

/** One watch frame: the length, then WatchEvent{type, object: {raw: the enveloped object}}. */
export function watchFrame(eventType: string, enveloped: Uint8Array): Buffer {
  const event = Buffer.from(type('WatchEvent').encode({ type: eventType, object: { raw: enveloped } }).finish());
  const length = Buffer.alloc(4);
  length.writeUInt32BE(event.length);
  return Buffer.concat([length, event]);
}

/** Whether an Accept header takes protobuf, and whether it takes JSON (a client asking for protobuf only gets 406 on a CRD). */
export function acceptOf(header: string | undefined): { protobuf: boolean; json: boolean } {
  const types = (header ?? '').split(',').map((t) => t.split(';')[0]?.trim().toLowerCase() ?? '');
  return { protobuf: types.includes(PROTOBUF), json: header === undefined || header === '' || types.some((t) => t === 'application/json' || t === '*/*' || t === 'application/*') };
}
