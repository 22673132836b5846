/** Decides where a connection goes (service endpoint, workload, passthrough or refusal) from its destination, ztunnel's build_request in small. */
import { isIP } from 'node:net';
import type { ServicePortConfig } from '../config/config-schema.js';
import type { Service, StateSnapshot, Workload } from '../state/state-snapshot.js';
import type { EndpointPicker } from './endpoint-picker.js';
import { isL7Destination } from '../l7/l7-destination.js';
import type { SocketAddr } from './original-destination.js';

export type Route =
  | { kind: 'service'; service: Service; servicePort: ServicePortConfig; endpoint: Workload; upstream: SocketAddr; l7: boolean }
  | { kind: 'workload'; workload: Workload; upstream: SocketAddr; l7: boolean }
  | { kind: 'passthrough'; upstream: SocketAddr; l7: false }
  | { kind: 'refused'; code: 'WEFT_ERR_NO_HEALTHY_UPSTREAM' | 'WEFT_ERR_SELF_CALL' | 'WEFT_ERR_UNKNOWN_SERVICE'; message: string };

/** What the client asked for: an address (captured or explicit), or a service named explicitly (localPorts, CONNECT reviews.default:9080). */
export type Destination = { kind: 'address'; address: SocketAddr } | { kind: 'service'; service: Service; port: number };

export interface RouteContext {
  snapshot: StateSnapshot;
  picker: EndpointPicker;
  /** weft's own listener addresses; a destination among them would loop (ztunnel's SelfCall). */
  isOwnListener: (addr: SocketAddr) => boolean;
  /** Endpoints already tried for this connection. */
  exclude?: ReadonlySet<Workload>;
}

export function routeFor(dest: Destination, ctx: RouteContext): Route {
  if (dest.kind === 'service') return serviceRoute(dest.service, dest.port, ctx);
  const { address, port } = dest.address;
  if (ctx.isOwnListener(dest.address)) {
    return { kind: 'refused', code: 'WEFT_ERR_SELF_CALL', message: `${address}:${port} is one of weft's own listeners; refusing a connection loop` };
  }
  const target = ctx.snapshot.serviceByVip(address, port);
  if (target !== undefined) return serviceRoute(target.service, port, ctx);
  const workload = ctx.snapshot.workloadByIp(address);
  if (workload !== undefined) return { kind: 'workload', workload, upstream: { address, port }, l7: isL7Destination(ctx.snapshot, { workload, port }) };
  return { kind: 'passthrough', upstream: { address, port }, l7: false };
}

function serviceRoute(service: Service, port: number, ctx: RouteContext): Route {
  const servicePort = service.ports.find((p) => p.port === port);
  if (servicePort === undefined) {
    return { kind: 'refused', code: 'WEFT_ERR_UNKNOWN_SERVICE', message: `service ${service.key} has no port ${port} (ports: ${service.ports.map((p) => p.port).join(', ')})` };
  }
  const endpoint = ctx.picker.pick(service, ctx.exclude);
  const address = endpoint?.addresses[0];
  if (endpoint === undefined || address === undefined) {
    return { kind: 'refused', code: 'WEFT_ERR_NO_HEALTHY_UPSTREAM', message: `service ${service.key} has no healthy endpoint` };
  }
  const l7 = isL7Destination(ctx.snapshot, { service, workload: endpoint, port });
  return { kind: 'service', service, servicePort, endpoint, upstream: { address, port: servicePort.targetPort ?? port }, l7 };
}

/** Parses the authority of CONNECT / SOCKS5 / absolute-form requests: a service name, a VIP or an IP. */
export function destinationForHost(host: string, port: number, snapshot: StateSnapshot): Destination | { kind: 'hostname'; host: string; port: number } {
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  if (isIP(bare) !== 0) return { kind: 'address', address: { address: bare, port } };
  const service = snapshot.serviceByName(bare);
  if (service !== undefined) return { kind: 'service', service, port };
  return { kind: 'hostname', host: bare, port };
}
