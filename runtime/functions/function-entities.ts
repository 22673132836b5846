/**
 * A function as the mesh sees it: a service `<name>.<namespace>` (port 80, its VIPs) selecting one synthetic local
 * workload whose address lies in 240.0.0.0/4 (reserved, never routed), so routing, authorization, plugins and
 * telemetry treat it as any other destination. The function host answers connections made to that address.
 */
// node:crypto is loaded on first use, not at start-up: an idle node holds none of it (test/bench/README.md, idle memory).
import type { ServiceConfig, WorkloadConfig } from '../config/config-schema.js';
import type { FunctionConfig } from '../config/function-config-schema.js';

/** The port a function's service listens on. */
export const FUNCTION_PORT = 80;
/** Label on a function's synthetic workload, and its service's selector. */
export const FUNCTION_LABEL = 'weft.dev/function';

/** `name.namespace`, the key functions, services and metrics share. */
export function functionKey(fn: { name: string; namespace: string }): string {
  return `${fn.name}.${fn.namespace}`;
}

/** A stable address for the function's workload: 240.x.y.z from a hash of its key, so reloads and reorders keep it. */
export function functionAddress(fn: { name: string; namespace: string }): string {
  const h = process.getBuiltinModule('node:crypto').createHash('sha256').update(functionKey(fn)).digest();
  return `240.${h[0]}.${h[1]}.${h[2]}`;
}

/** Whether `address` may be a function workload's (the whole reserved block; the host checks the exact one). */
export function isFunctionRange(address: string): boolean {
  return address.startsWith('240.');
}

export function functionWorkload(fn: FunctionConfig, node: string): WorkloadConfig {
  return {
    name: `fn-${fn.name}`,
    namespace: fn.namespace,
    serviceAccount: fn.serviceAccount ?? fn.name,
    addresses: [functionAddress(fn)],
    node,
    protocol: 'TCP',
    status: 'Healthy',
    labels: { app: fn.name, ...fn.labels, [FUNCTION_LABEL]: fn.name },
    annotations: fn.annotations,
  };
}

export function functionService(fn: FunctionConfig): ServiceConfig {
  return {
    name: fn.name,
    namespace: fn.namespace,
    addresses: fn.addresses,
    ports: [{ name: 'http', port: FUNCTION_PORT, targetPort: FUNCTION_PORT, appProtocol: 'http' }],
    selector: { [FUNCTION_LABEL]: fn.name },
    annotations: fn.annotations,
  };
}
