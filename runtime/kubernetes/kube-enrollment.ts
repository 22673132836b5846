/** Mesh enrollment as Istio ambient marks it: `istio.io/dataplane-mode` (or weft's own `weft.dev/dataplane-mode`) on the pod, else on its namespace; `none` on a pod opts it out. */
import type { SlimNamespace, SlimPod } from './kube-objects.js';

export const ISTIO_DATAPLANE_MODE = 'istio.io/dataplane-mode';
export const WEFT_DATAPLANE_MODE = 'weft.dev/dataplane-mode';
/** Pods with an injected sidecar are never captured by ztunnel (istio-cni skips them). */
const SIDECAR_STATUS = 'sidecar.istio.io/status';

function modeOf(labels: Record<string, string>): string | undefined {
  return labels[WEFT_DATAPLANE_MODE] ?? labels[ISTIO_DATAPLANE_MODE];
}

export function isEnrolled(pod: SlimPod, namespace: SlimNamespace | undefined): boolean {
  if (pod.hostNetwork || pod.annotations[SIDECAR_STATUS] !== undefined) return false;
  const own = modeOf(pod.labels);
  if (own !== undefined) return own === 'ambient';
  return namespace !== undefined && modeOf(namespace.labels) === 'ambient';
}
