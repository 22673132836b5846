// A Kubernetes source serving into a real ProxyState (full reloads swap a rebuilt snapshot, pod changes derive one), as App does, without listeners.
import type { ReloadResult } from '../../runtime/app.js';
import type { WeftConfig } from '../../runtime/config/config-schema.js';
import { inClusterConnection } from '../../runtime/kubernetes/kube-config.js';
import { KubernetesSource } from '../../runtime/kubernetes/kubernetes-source.js';
import { ProxyState } from '../../runtime/state/proxy-state.js';
import { MetricsRegistry } from '../../runtime/telemetry/metrics-registry.js';
import type { KubeTestCluster } from './kube-apiserver-fake/kube-test-cluster.js';

export interface ServedSource {
  source: KubernetesSource;
  state: ProxyState;
  metrics: MetricsRegistry;
}

/** Starts the source against the fake cluster; the caller awaits `source.whenSynced()` and stops it. */
export function serveKubernetesSource(cluster: KubeTestCluster, base: WeftConfig): ServedSource {
  const state = new ProxyState(base);
  const metrics = new MetricsRegistry();
  const source = new KubernetesSource({
    base,
    connection: inClusterConnection(cluster.env, cluster.serviceAccountDir),
    metrics,
    recordEvents: false,
    coalesceMs: 2,
    target: {
      state,
      reload: (config): Promise<ReloadResult> => {
        state.update(config);
        return Promise.resolve({ ok: true });
      },
      patchWorkloads: (change) => {
        state.patch(change);
        return { ok: true };
      },
      recordRejectedReload: () => undefined,
    },
  });
  source.start();
  return { source, state, metrics };
}
