/** Reports a rejected object on the object itself as a Kubernetes Event (type Warning, reason WeftRejected), once per object version and reason. */
import { createLogger } from '../log.js';
import type { KubeClient } from './kube-client.js';
import type { KubeMetrics } from './kube-metrics.js';
import { KINDS, type ObjectProblem } from './kube-mesh-model.js';

const log = createLogger('kubernetes');

const API_VERSIONS: Record<string, string> = { pods: 'v1', services: 'v1', namespaces: 'v1', wasmplugins: 'extensions.istio.io/v1alpha1', authorizationpolicies: 'security.istio.io/v1' };

export class KubeEventRecorder {
  readonly #client: KubeClient;
  readonly #node: string;
  readonly #metrics: KubeMetrics;
  readonly #pending = new Set<Promise<void>>();

  constructor(client: KubeClient, node: string, metrics: KubeMetrics) {
    this.#client = client;
    this.#node = node;
    this.#metrics = metrics;
  }

  record(p: ObjectProblem): void {
    // Cluster-scoped objects (Namespaces) get their Events in `default`, as kubectl describe looks for them.
    const namespace = p.namespace ?? 'default';
    const now = new Date().toISOString();
    const event = {
      metadata: { generateName: `${p.name}.`, namespace },
      involvedObject: { apiVersion: API_VERSIONS[p.resource], kind: KINDS[p.resource], name: p.name, ...(p.namespace === undefined ? {} : { namespace: p.namespace }), resourceVersion: p.resourceVersion },
      reason: 'WeftRejected',
      message: `${p.reason}${p.lastGoodServing ? ' (the last good version keeps serving)' : ''}`.slice(0, 1024),
      type: 'Warning',
      source: { component: 'weft', host: this.#node },
      reportingComponent: 'weft.dev/node',
      reportingInstance: this.#node,
      firstTimestamp: now,
      lastTimestamp: now,
      count: 1,
    };
    const post = (async () => {
      const res = await this.#client.request(`/api/v1/namespaces/${namespace}/events`, { method: 'POST', body: event });
      await res.body.dump();
      this.#metrics.requests.inc({ resource: 'events', verb: 'create', code: String(res.statusCode) });
      if (res.statusCode >= 300) log.warn({ object: `${p.resource}/${namespace}/${p.name}`, status: res.statusCode }, 'could not record an Event for a rejected object');
    })().catch((err: unknown) => log.warn({ object: `${p.resource}/${namespace}/${p.name}`, error: (err as Error).message }, 'could not record an Event for a rejected object'));
    this.#pending.add(post);
    void post.finally(() => this.#pending.delete(post));
  }

  /** Waits for Events still being posted (tests, shutdown). */
  async flush(): Promise<void> {
    await Promise.all([...this.#pending]);
  }
}
