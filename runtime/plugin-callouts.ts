/** Where plugin callouts go: cluster names (`jwks` in the default namespace, `jwks.default`, Envoy's `outbound|8080||jwks.default.svc.cluster.local`, or `ip:port`) resolved against mesh state, sent with undici. */
import { isIP } from 'node:net';
import type { ProxyState } from './state/proxy-state.js';
import type { EndpointPicker } from './l4/endpoint-picker.js';
import type { GrpcResolver, HttpCallFn } from './wasm/host-services.js';
import { WeftError } from './errors.js';

export interface ClusterAddress {
  host: string;
  port: number;
}

/** Envoy cluster names as Istio generates them: `outbound|<port>|<subset>|<host>`. */
const ISTIO_CLUSTER = /^outbound\|(\d+)\|[^|]*\|(.+)$/;

export function resolveCluster(cluster: string, state: ProxyState, picker: EndpointPicker): ClusterAddress | undefined {
  const snapshot = state.current;
  let host = cluster;
  let port: number | undefined;
  const istio = ISTIO_CLUSTER.exec(cluster);
  if (istio !== null) {
    port = Number(istio[1]);
    host = istio[2] as string;
  } else {
    const colon = cluster.lastIndexOf(':');
    if (colon > 0 && /^\d+$/.test(cluster.slice(colon + 1))) {
      port = Number(cluster.slice(colon + 1));
      host = cluster.slice(0, colon).replace(/^\[|\]$/g, '');
    }
  }
  // A bare name is a service in the default namespace, as a Kubernetes short name from there would be.
  const service = snapshot.serviceByName(host) ?? snapshot.serviceByName(`${host}.default`) ?? (isIP(host) !== 0 ? snapshot.services.find((s) => s.addresses.includes(host)) : undefined);
  if (service !== undefined) {
    const servicePort = port === undefined ? service.ports[0] : service.ports.find((p) => p.port === port);
    const endpoint = picker.pick(service);
    const address = endpoint?.addresses[0];
    if (servicePort === undefined || address === undefined) return undefined;
    return { host: address, port: servicePort.targetPort ?? servicePort.port };
  }
  if (isIP(host) !== 0 && port !== undefined) return { host, port };
  return undefined;
}

/** proxy_http_call: one HTTP/1.1 request to the resolved cluster, bounded by the plugin's timeout. */
export function createPluginHttpCall(state: ProxyState, picker: EndpointPicker): HttpCallFn {
  return async (cluster, headers, body, _trailers, timeoutMs) => {
    const target = resolveCluster(cluster, state, picker);
    if (target === undefined) throw new WeftError('WEFT_ERR_UNKNOWN_SERVICE', `plugin callout to unknown cluster "${cluster}" (expected name.namespace, outbound|port||host or ip:port)`);
    const { request } = await import('undici');
    let method = 'GET';
    let path = '/';
    const out: Record<string, string> = {};
    for (const [name, value] of headers) {
      if (name === ':method') method = value;
      else if (name === ':path') path = value;
      else if (name === ':authority') out.host = value;
      else if (!name.startsWith(':')) out[name] = value;
    }
    const host = target.host.includes(':') ? `[${target.host}]` : target.host;
    const res = await request(`http://${host}:${target.port}${path}`, {
      method: method as 'GET',
      headers: out,
      body: body.length > 0 ? Buffer.from(body) : undefined,
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
      signal: AbortSignal.timeout(timeoutMs),
    });
    const responseBody = Buffer.from(await res.body.arrayBuffer());
    const responseHeaders: [string, string][] = [[':status', String(res.statusCode)]];
    for (const [name, value] of Object.entries(res.headers)) {
      for (const v of Array.isArray(value) ? value : [value]) if (v !== undefined) responseHeaders.push([name, v]);
    }
    return { headers: responseHeaders, body: responseBody, trailers: [] };
  };
}

/** gRPC callouts (proxy_grpc_call) resolve the same way, plaintext inside the mesh. */
export function createPluginGrpcResolver(state: ProxyState, picker: EndpointPicker): GrpcResolver {
  return (cluster) => {
    const target = resolveCluster(cluster, state, picker);
    return target === undefined ? undefined : { address: `${target.host.includes(':') ? `[${target.host}]` : target.host}:${target.port}` };
  };
}
