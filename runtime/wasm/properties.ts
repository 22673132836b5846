/**
 * proxy_get_property: path normalization across the three SDK framings (Rust/Go `a\0b`, C++ `a\0b\0`, AssemblyScript
 * `a.b`) and the Envoy attribute set weft answers, encoded as Envoy does (strings raw, integers 8-byte little-endian,
 * booleans 1 byte, timestamps/durations int64 nanoseconds, maps as serialized pairs).
 */
import { type HeaderPairs, encodeHeaderMap } from './header-map-codec.js';
import { type HeaderMapSlot, LazyHeaderMap, firstValue, pairsOf } from './lazy-header-map.js';
import type { PluginVm } from './plugin-vm.js';
import type { StreamContext } from './stream-context.js';
import type { PeerInfo } from './stream-info.js';

export type PropertyValue = string | number | bigint | boolean | Date | Uint8Array | HeaderPairs | Record<string, string>;

const encoder = new TextEncoder();

export function normalizePropertyPath(raw: string): string {
  if (!raw.includes('\0')) return raw;
  return raw
    .split('\0')
    .filter((s) => s !== '')
    .join('.');
}

export function encodeProperty(value: PropertyValue): Uint8Array {
  if (typeof value === 'string') return encoder.encode(value);
  if (typeof value === 'boolean') return Uint8Array.of(value ? 1 : 0);
  if (value instanceof Uint8Array) return value;
  const out = new Uint8Array(8);
  const view = new DataView(out.buffer);
  if (typeof value === 'bigint') view.setBigInt64(0, BigInt.asIntN(64, value), true);
  else if (typeof value === 'number') {
    if (Number.isInteger(value)) view.setBigInt64(0, BigInt(value), true);
    else view.setFloat64(0, value, true);
  } else if (value instanceof Date) view.setBigInt64(0, BigInt(value.getTime()) * 1_000_000n, true);
  else if (Array.isArray(value)) return encodeHeaderMap(value);
  else return encodeHeaderMap(Object.entries(value));
  return out;
}

function header(headers: HeaderMapSlot | undefined, name: string): string | undefined {
  if (headers === undefined) return undefined;
  return headers instanceof LazyHeaderMap ? headers.first(name) : firstValue(headers, name);
}

function peerAddress(peer: PeerInfo | undefined): string | undefined {
  if (peer === undefined) return undefined;
  return peer.address.includes(':') ? `[${peer.address}]:${peer.port}` : `${peer.address}:${peer.port}`;
}

/** The value at `path` for the active context, or undefined (NOT_FOUND). */
export function resolveProperty(vm: PluginVm, path: string): PropertyValue | undefined {
  const ctx = vm.active;
  const stream = ctx?.kind === 'stream' ? ctx : undefined;
  const overlay = stream?.propertyOverlay?.get(path) ?? vm.propertyOverlay.get(path);
  if (overlay !== undefined) return overlay;
  switch (path) {
    case 'plugin_name':
      return vm.settings.plugin;
    case 'plugin_root_id':
      return vm.settings.rootId;
    case 'plugin_vm_id':
      return vm.settings.vmId;
  }
  if (stream !== undefined) {
    const v = streamProperty(stream, path);
    if (v !== undefined) return v;
  }
  return vm.services.nodeProperties[path];
}

function streamProperty(s: StreamContext, path: string): PropertyValue | undefined {
  const info = s.streamInfo;
  const fromBag = info.properties?.[path];
  if (fromBag !== undefined) return fromBag;
  const req = s.requestHeaders;
  const dot = path.indexOf('.');
  const head = dot < 0 ? path : path.slice(0, dot);
  const tail = dot < 0 ? '' : path.slice(dot + 1);
  switch (head) {
    case 'request': {
      const fullPath = header(req, ':path');
      const q = fullPath?.indexOf('?') ?? -1;
      switch (tail) {
        case 'path':
          return fullPath;
        case 'url_path':
          return fullPath === undefined ? undefined : q < 0 ? fullPath : fullPath.slice(0, q);
        case 'query':
          return fullPath === undefined ? undefined : q < 0 ? '' : fullPath.slice(q + 1);
        case 'host':
          return header(req, ':authority') ?? header(req, 'host');
        case 'scheme':
          return header(req, ':scheme');
        case 'method':
          return header(req, ':method');
        case 'referer':
          return header(req, 'referer');
        case 'useragent':
          return header(req, 'user-agent');
        case 'id':
          return header(req, 'x-request-id') ?? info.request?.id;
        case 'protocol':
          return info.request?.protocol;
        case 'time':
          return info.request?.time;
        case 'duration':
          return info.request?.time === undefined ? undefined : BigInt(Date.now() - info.request.time.getTime()) * 1_000_000n;
        case 'headers':
          return req === undefined ? undefined : pairsOf(req);
        case 'size':
        case 'total_size':
          return s.requestBytes;
        default:
          return tail.startsWith('headers.') ? header(req, tail.slice(8)) : undefined;
      }
    }
    case 'response': {
      const res = s.responseHeaders;
      switch (tail) {
        case 'code': {
          const status = header(res, ':status');
          return status === undefined ? undefined : BigInt(Number(status) | 0);
        }
        case 'headers':
          return res === undefined ? undefined : pairsOf(res);
        case 'trailers':
          return s.responseTrailers;
        case 'size':
        case 'total_size':
          return s.responseBytes;
        default:
          return tail.startsWith('headers.') ? header(res, tail.slice(8)) : undefined;
      }
    }
    case 'source':
    case 'destination':
    case 'upstream': {
      const peer = head === 'source' ? info.source : head === 'destination' ? info.destination : info.upstream;
      if (peer === undefined) return undefined;
      if (tail === 'address') return peerAddress(peer);
      if (tail === 'port') return BigInt(peer.port);
      if (tail === 'principal') return peer.principal;
      return undefined;
    }
    case 'connection': {
      const c = info.connection;
      if (c === undefined) return undefined;
      const map: Record<string, PropertyValue | undefined> = {
        id: c.id === undefined ? undefined : BigInt(c.id),
        mtls: c.mtls,
        tls_version: c.tlsVersion,
        requested_server_name: c.requestedServerName,
        uri_san_peer_certificate: c.uriSanPeerCertificate,
        uri_san_local_certificate: c.uriSanLocalCertificate,
        dns_san_peer_certificate: c.dnsSanPeerCertificate,
        dns_san_local_certificate: c.dnsSanLocalCertificate,
        subject_peer_certificate: c.subjectPeerCertificate,
        subject_local_certificate: c.subjectLocalCertificate,
        sha256_peer_certificate_digest: c.sha256PeerCertificateDigest,
      };
      return map[tail];
    }
    default:
      return undefined;
  }
}
