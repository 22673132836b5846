/** Conversions between node:http2 header objects and weft's HeaderList on the h2c path, and the gRPC status weft answers for its own HTTP errors. */
import type http2 from 'node:http2';
import { HeaderList } from './header-list.js';

/** Connection-specific fields are forbidden in HTTP/2 (RFC 9113 §8.2.2); `host` becomes `:authority`. */
export const H2_HOP: ReadonlySet<string> = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'host']);

/** The regular fields of an incoming header block (pseudo-headers and hop-by-hop fields left out). */
export function headerListFrom(raw: http2.IncomingHttpHeaders | Record<string, string | string[] | undefined>): HeaderList {
  const flat: string[] = [];
  for (const name in raw) {
    const value = raw[name];
    if (value === undefined || name.charCodeAt(0) === 0x3a || H2_HOP.has(name)) continue;
    if (Array.isArray(value)) for (const v of value) flat.push(name, v);
    else flat.push(name, String(value));
  }
  return new HeaderList(flat);
}

/** Adds `list` to an outgoing header object; repeated names become arrays, as node:http2 expects. */
export function addOutgoing(out: http2.OutgoingHttpHeaders, list: HeaderList): http2.OutgoingHttpHeaders {
  const f = list.flat;
  for (let i = 0; i < f.length; i += 2) {
    const n = f[i]!;
    const v = f[i + 1]!;
    const prev = out[n];
    out[n] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [String(prev), v];
  }
  return out;
}

/** gRPC status for a proxy-generated HTTP status (gRPC's HTTP-to-status mapping, doc/http-grpc-status-mapping.md). */
export function grpcStatusFor(status: number): number {
  if (status === 400) return 13;
  if (status === 401) return 16;
  if (status === 403) return 7;
  if (status === 404) return 12;
  if (status === 429 || status === 502 || status === 503 || status === 504) return 14;
  return 2;
}
