/**
 * EndpointSlices of a Service without a selector (hand-written, or mirrored from hand-written Endpoints) to weft
 * workloads: one plaintext (TCP) workload per address, labelled with the Service's name so the Service selects them.
 * Their addresses are not pods weft knows: no identity is vouched for, and they are never this node's workloads.
 */
import { workloadSchema, type WorkloadConfig } from '../config/config-schema.js';
import type { SlimEndpointSlice } from './kube-objects.js';

/** The label EndpointSlices carry naming their Service; weft's model selects a selector-less Service's endpoints by it. */
export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';
/** The node of an endpoint outside weft's pods: no node runs weft for it, so it is never local. */
export const EXTERNAL_NODE = 'endpointslice.external';

export function sliceWorkloads(slice: SlimEndpointSlice): WorkloadConfig[] {
  const out: WorkloadConfig[] = [];
  for (const e of slice.endpoints) {
    for (const ip of e.addresses) {
      const parsed = workloadSchema.safeParse({
        name: `${slice.name}-${ip.toLowerCase().replaceAll('.', '-').replaceAll(':', 'x')}`,
        namespace: slice.namespace ?? 'default',
        addresses: [ip],
        node: EXTERNAL_NODE,
        protocol: 'TCP',
        status: e.ready ? 'Healthy' : 'Unhealthy',
        labels: { [SERVICE_NAME_LABEL]: slice.service ?? '' },
      });
      // An address the API server accepted but weft cannot use (an FQDN slice) is left out, as kube-proxy does.
      if (parsed.success) out.push(parsed.data);
    }
  }
  return out;
}
