/**
 * Reports a rejected object on the object itself as a Kubernetes Event (type Warning, reason WeftRejected), once per
 * object version and reason, rate-limited as client-go's recorder is: a token bucket per object (25, then one per
 * 5 minutes) and one for the whole source (50, then 5 a second), so a mass rejection cannot flood the API server.
 */
import { createLogger } from '../log.js';
import type { KubeClient } from './kube-client.js';
import type { KubeMetrics } from './kube-metrics.js';
import { KINDS, type ObjectProblem } from './kube-mesh-model.js';

const log = createLogger('kubernetes');

const API_VERSIONS: Record<string, string> = { pods: 'v1', endpointslices: 'discovery.k8s.io/v1', services: 'v1', namespaces: 'v1', wasmplugins: 'extensions.istio.io/v1alpha1', authorizationpolicies: 'security.istio.io/v1' };

export interface EventRateLimits {
  /** Per object (client-go's EventSourceObjectSpamFilter: burst 25, one per 300 s). */
  objectBurst: number;
  objectPerSecond: number;
  /** For all objects together. */
  totalBurst: number;
  totalPerSecond: number;
}

export const DEFAULT_EVENT_LIMITS: EventRateLimits = { objectBurst: 25, objectPerSecond: 1 / 300, totalBurst: 50, totalPerSecond: 5 };

/** Buckets kept at most; full ones are forgotten first (a full bucket is the same as no bucket). */
const MAX_BUCKETS = 4096;

class TokenBucket {
  tokens: number;
  at: number;
  constructor(readonly burst: number, readonly perSecond: number, now: number) {
    this.tokens = burst;
    this.at = now;
  }

  refill(now: number): number {
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.at) / 1000) * this.perSecond);
    this.at = now;
    return this.tokens;
  }

  take(now: number): boolean {
    if (this.refill(now) < 1) return false;
    this.tokens--;
    return true;
  }
}

export class KubeEventRecorder {
  readonly #client: KubeClient;
  readonly #node: string;
  readonly #metrics: KubeMetrics;
  readonly #pending = new Set<Promise<void>>();
  readonly #limits: EventRateLimits;
  readonly #now: () => number;
  readonly #total: TokenBucket;
  readonly #perObject = new Map<string, TokenBucket>();

  constructor(client: KubeClient, node: string, metrics: KubeMetrics, opts: { limits?: Partial<EventRateLimits>; now?: () => number } = {}) {
    this.#client = client;
    this.#node = node;
    this.#metrics = metrics;
    this.#limits = { ...DEFAULT_EVENT_LIMITS, ...opts.limits };
    this.#now = opts.now ?? Date.now;
    this.#total = new TokenBucket(this.#limits.totalBurst, this.#limits.totalPerSecond, this.#now());
  }

  /** Whether an Event about `object` may be posted now (takes a token from its bucket and the total one). */
  #admit(object: string): boolean {
    const now = this.#now();
    let bucket = this.#perObject.get(object);
    if (bucket === undefined) {
      if (this.#perObject.size >= MAX_BUCKETS) for (const [k, b] of this.#perObject) if (b.refill(now) >= b.burst) this.#perObject.delete(k);
      bucket = new TokenBucket(this.#limits.objectBurst, this.#limits.objectPerSecond, now);
      if (this.#perObject.size < MAX_BUCKETS) this.#perObject.set(object, bucket);
    }
    if (bucket.refill(now) < 1 || this.#total.refill(now) < 1) return false;
    bucket.take(now);
    this.#total.take(now);
    return true;
  }

  record(p: ObjectProblem): void {
    const object = `${p.resource}/${p.namespace ?? ''}/${p.name}`;
    if (!this.#admit(object)) {
      this.#metrics.eventsDropped.inc({ kind: p.resource });
      return;
    }
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
