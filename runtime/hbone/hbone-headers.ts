/** The HBONE CONNECT request's headers (`:authority`, forwarded, baggage, traceparent) and their parsing on the server side. */
import { isIP } from 'node:net';
// node:crypto is loaded on first use, not at start-up: an idle node holds none of it (test/bench/README.md, idle memory).
import type { SocketAddr } from '../l4/original-destination.js';
import type { Workload } from '../state/state-snapshot.js';

export function formatAuthority(a: SocketAddr): string {
  return isIP(a.address) === 6 ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
}

/** `ip:port` or `[v6]:port` as SocketAddr; undefined for hostnames and garbage (the server answers 400). */
export function parseAuthority(text: string | undefined): SocketAddr | undefined {
  if (text === undefined) return undefined;
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([0-9.]+)):(\d{1,5})$/.exec(text);
  if (m === null) return undefined;
  const address = m[1] ?? m[2] ?? '';
  const port = Number(m[3]);
  if (isIP(address) === 0 || port < 1 || port > 65535) return undefined;
  return { address, port };
}

/** RFC 7239 `for="ip:port"` (quoted because of the colon), optionally with the service host ztunnel adds. */
export function formatForwarded(client: SocketAddr, host?: string): string {
  const f = `for="${formatAuthority(client)}"`;
  return host === undefined ? f : `${f};host=${host}`;
}

export function parseForwarded(text: string | undefined): { for?: SocketAddr; host?: string } {
  if (text === undefined) return {};
  const out: { for?: SocketAddr; host?: string } = {};
  for (const part of text.split(',')[0]?.split(';') ?? []) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    const key = part.slice(0, eq).trim().toLowerCase();
    const value = part.slice(eq + 1).trim().replace(/^"|"$/g, '');
    if (key === 'for') {
      const addr = parseAuthority(value);
      if (addr !== undefined) out.for = addr;
    } else if (key === 'host') out.host = value;
  }
  return out;
}

/** ztunnel's baggage: the source's cluster, namespace, workload and canonical service/revision. */
export function baggageFor(w: Workload | undefined, cluster = 'Kubernetes'): string | undefined {
  if (w === undefined) return undefined;
  const service = w.labels['service.istio.io/canonical-name'] ?? w.labels.app ?? w.name;
  const version = w.labels['service.istio.io/canonical-revision'] ?? w.labels.version ?? 'latest';
  return `k8s.cluster.name=${cluster},k8s.namespace.name=${w.namespace},k8s.pod.name=${w.name},service.name=${service},service.version=${version}`;
}

export function parseBaggage(text: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of text?.split(',') ?? []) {
    const eq = item.indexOf('=');
    if (eq > 0) out[item.slice(0, eq).trim()] = item.slice(eq + 1).split(';')[0]?.trim() ?? '';
  }
  return out;
}

/** Random bytes for trace ids, drawn 24 at a time from a pool refilled every 170 tunnels (one randomFillSync each). */
const TRACE_POOL = 24 * 170;
let tracePool: Buffer | undefined;
let traceOffset = TRACE_POOL;

/** A fresh W3C traceparent for the tunnel: HBONE traces the connection, not application requests. */
export function newTraceparent(): string {
  if (tracePool === undefined || traceOffset === TRACE_POOL) {
    tracePool ??= Buffer.allocUnsafe(TRACE_POOL);
    process.getBuiltinModule('node:crypto').randomFillSync(tracePool);
    traceOffset = 0;
  }
  const at = traceOffset;
  traceOffset += 24;
  return `00-${tracePool.toString('hex', at, at + 16)}-${tracePool.toString('hex', at + 16, at + 24)}-00`;
}

export function isTraceparent(text: string | undefined): boolean {
  return text !== undefined && /^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/.test(text);
}
