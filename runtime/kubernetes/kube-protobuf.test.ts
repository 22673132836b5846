// weft's protobuf reading against the fake API server's encoder: the same slim objects as the JSON path for every shape
// the mapping reads, list heads read ahead from partial bodies, watch frames split anywhere, and bad bytes named.
import { describe, expect, it } from 'vitest';
import { stripEndpointSlice, stripNamespace, stripPod, stripService } from './kube-objects.js';
import { PROTO_BY_RESOURCE } from './kube-protobuf-objects.js';
import { MAX_FRAME_BYTES, ProtobufDecodeError, WatchFrameReader, decodeList, decodeWatchEvent, listHead } from './kube-protobuf.js';
import type { RawObject } from './kube-reflector.js';
import { encodeList, encodeObject, envelope, watchFrame } from '../../test/helpers/kube-apiserver-fake/fake-protobuf.js';
import { SIG_SCALABILITY, scalePod, scaleService } from '../../test/helpers/kube-apiserver-fake/fake-scale.js';

const KINDS = { pods: ['Pod', 'v1', stripPod], services: ['Service', 'v1', stripService], namespaces: ['Namespace', 'v1', stripNamespace], endpointslices: ['EndpointSlice', 'discovery.k8s.io/v1', stripEndpointSlice] } as const;

/** The object read back from a one-item protobuf list, next to what the JSON path makes of it. */
function both(resource: keyof typeof KINDS, obj: RawObject): { proto: unknown; json: unknown } {
  const [kind, apiVersion, strip] = KINDS[resource];
  const codec = PROTO_BY_RESOURCE[resource];
  if (codec === undefined) throw new Error(resource);
  const body = encodeList(apiVersion, kind, { resourceVersion: '9' }, [encodeObject(kind, obj)]);
  return { proto: decodeList(body, codec, 'test').items[0], json: strip(JSON.parse(JSON.stringify(obj)) as RawObject) };
}

const meta = (name: string, extra: Record<string, unknown> = {}) => ({ name, namespace: 'shop', resourceVersion: '41', ...extra });

describe('protobuf objects read as the JSON path strips them', () => {
  it.each<[string, keyof typeof KINDS, RawObject]>([
    ['a scale pod (managedFields, container spec, status details)', 'pods', { ...scalePod(SIG_SCALABILITY, 7), metadata: { ...scalePod(SIG_SCALABILITY, 7).metadata, resourceVersion: '41', annotations: { 'weft.dev/plugins': 'a,b', 'istio.io/x': 'y', 'other.io/z': '1' } } }],
    ['a pod with no IP, node or service account', 'pods', { metadata: meta('p0'), spec: { containers: [{ name: 'c' }] }, status: { phase: 'Pending' } }],
    ['a host-network pod with a UDP port and a podIP only', 'pods', { metadata: meta('p1', { labels: { app: 'x' } }), spec: { hostNetwork: true, containers: [{ name: 'c', ports: [{ name: 'dns', containerPort: 53, protocol: 'UDP' }, { name: 'web', containerPort: 80 }] }] }, status: { phase: 'Running', podIP: '10.1.1.1', conditions: [{ type: 'Ready', status: 'False' }] } }],
    ['a dual-stack pod', 'pods', { metadata: meta('p2'), spec: { nodeName: 'n' }, status: { podIP: '10.1.1.2', podIPs: [{ ip: '10.1.1.2' }, { ip: 'fd00::2' }], conditions: [{ type: 'Ready', status: 'True' }] } }],
    ['a scale Service', 'services', { ...scaleService(SIG_SCALABILITY, 3), metadata: { ...scaleService(SIG_SCALABILITY, 3).metadata, resourceVersion: '41' } }],
    ['a Service with a named targetPort, appProtocol and no clusterIPs', 'services', { metadata: meta('s1', { annotations: { 'weft.dev/plugins': 'p' } }), spec: { clusterIP: '10.96.0.9', selector: { app: 'x' }, ports: [{ name: 'grpc', port: 9090, targetPort: 'grpc', appProtocol: 'grpc' }, { port: 53, protocol: 'UDP' }] } }],
    ['a headless ExternalName Service', 'services', { metadata: meta('s2'), spec: { type: 'ExternalName', clusterIP: 'None', ports: [] } }],
    ['a namespace', 'namespaces', { metadata: { name: 'ns', resourceVersion: '41', labels: { 'istio.io/dataplane-mode': 'ambient' }, annotations: { 'weft.dev/plugins': 'p' } } }],
    ['an EndpointSlice (ready unset, false, true; a port without a number)', 'endpointslices', { metadata: meta('e1', { labels: { 'kubernetes.io/service-name': 'svc' } }), addressType: 'IPv4', endpoints: [{ addresses: ['10.2.0.1'] }, { addresses: ['10.2.0.2'], conditions: { ready: false }, nodeName: 'n' }, { addresses: ['10.2.0.3'], conditions: { ready: true } }], ports: [{ name: 'http', port: 8080 }, { name: 'none' }] }],
  ])('%s', (_what, resource, obj) => {
    const { proto, json } = both(resource, obj);
    expect(proto).toEqual(json);
  });

  it('reads empty strings (Go writes unset non-pointer strings as empty) as unset, as JSON omits them', () => {
    const codec = PROTO_BY_RESOURCE.pods;
    if (codec === undefined) throw new Error('pods');
    const body = encodeList('v1', 'Pod', { resourceVersion: '9' }, [encodeObject('Pod', { metadata: { name: 'p', namespace: 'shop', resourceVersion: '3' }, spec: { nodeName: '', serviceAccountName: '' }, status: { phase: '', podIP: '' } })]);
    expect(decodeList(body, codec, 'test').items[0]).toMatchObject({ nodeName: undefined, serviceAccount: 'default', phase: undefined, ips: [] });
  });
});

describe('protobuf framing', () => {
  const codec = PROTO_BY_RESOURCE.pods;
  if (codec === undefined) throw new Error('pods');
  const items = ['a', 'b'].map((n) => encodeObject('Pod', { metadata: { name: n, namespace: 'shop', resourceVersion: '5' } }));
  const page = encodeList('v1', 'Pod', { resourceVersion: '5', continue: 'tok', remainingItemCount: 7 }, items);

  it('finds a list head in the first bytes of a body, and asks for more until it is whole', () => {
    expect(decodeList(page, codec, 'test')).toMatchObject({ resourceVersion: '5', continue: 'tok', remainingItemCount: 7 });
    const head = listHead(page);
    expect(head).toEqual({ continue: 'tok', remainingItemCount: 7 });
    let whole = 0;
    for (let n = 0; n <= page.length; n++) if (listHead(page.subarray(0, n)) !== undefined) whole = whole || n;
    expect(whole).toBeGreaterThan(8);
    expect(whole).toBeLessThan(page.length - items[1]!.length);
    expect(listHead(Buffer.from('{"kind":"PodList"'))).toEqual({ continue: undefined, remainingItemCount: undefined });
  });

  it('splits watch frames cut anywhere, and keeps a partial one pending', () => {
    const frames = Buffer.concat(['ADDED', 'MODIFIED', 'DELETED'].map((t) => watchFrame(t, envelope('v1', 'Pod', items[0]!))));
    for (const cut of [1, 3, 4, 5, 17, frames.length - 1]) {
      const reader = new WatchFrameReader();
      const got = [...reader.push(frames.subarray(0, cut), 'test'), ...reader.push(frames.subarray(cut), 'test')];
      expect(got.map((f) => decodeWatchEvent(f, codec, 'test').type)).toEqual(['ADDED', 'MODIFIED', 'DELETED']);
      expect(reader.pending).toBe(0);
    }
    const reader = new WatchFrameReader();
    reader.push(frames.subarray(0, frames.length - 2), 'test');
    expect(reader.pending).toBeGreaterThan(0);
  });

  it('names bad bytes: a missing prefix, a wrong kind, a corrupt item, an impossible frame length', () => {
    expect(() => decodeList(Buffer.from('{"items":[]}'), codec, 'list pods')).toThrow(/list pods: no k8s protobuf prefix/);
    expect(() => decodeList(encodeList('v1', 'Service', { resourceVersion: '1' }, []), codec, 'list pods')).toThrow(/ServiceList, not a PodList/);
    const corrupt = Buffer.from(page);
    corrupt.fill(0xff, page.length - 6);
    expect(() => decodeList(corrupt, codec, 'list pods')).toThrow(ProtobufDecodeError);
    const huge = Buffer.alloc(8);
    huge.writeUInt32BE(MAX_FRAME_BYTES + 1);
    expect(() => new WatchFrameReader().push(huge, 'watch pods')).toThrow(/watch pods: a watch frame of \d+ bytes/);
    expect(new ProtobufDecodeError('x')).toBeInstanceOf(SyntaxError);
  });
});
