// Events on rejected objects reach the (fake) API server as core/v1 Events, rate-limited per object and in total.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startKubeTestCluster, type KubeTestCluster } from '../../test/helpers/kube-apiserver-fake/kube-test-cluster.js';
import { inClusterConnection } from './kube-config.js';
import { KubeClient } from './kube-client.js';
import { KubeEventRecorder } from './kube-event-recorder.js';
import { KubeMetrics } from './kube-metrics.js';
import type { ObjectProblem } from './kube-mesh-model.js';
import { MetricsRegistry } from '../telemetry/metrics-registry.js';

let cluster: KubeTestCluster;
let client: KubeClient;

beforeAll(async () => {
  cluster = await startKubeTestCluster();
  client = new KubeClient(inClusterConnection(cluster.env, cluster.serviceAccountDir));
});

afterAll(async () => {
  await client.close();
  await cluster.close();
});

const problem = (name: string, resourceVersion = '7'): ObjectProblem => ({ resource: 'pods', namespace: 'shop', name, resourceVersion, reason: 'annotation weft.dev/plugins names "x", but there is no WasmPlugin shop/x', lastGoodServing: false });

describe('KubeEventRecorder', () => {
  it('posts Warning Events on the object, at most a burst per object and in total, refilling with time', async () => {
    let now = 1_000_000;
    const registry = new MetricsRegistry();
    const recorder = new KubeEventRecorder(client, 'node-a', new KubeMetrics(registry), { limits: { objectBurst: 3, objectPerSecond: 1 / 60, totalBurst: 5, totalPerSecond: 1 }, now: () => now });
    for (let i = 0; i < 5; i++) recorder.record(problem('a', String(i)));
    recorder.record(problem('b'));
    recorder.record(problem('c'));
    recorder.record(problem('d'));
    await recorder.flush();
    const posted = (): string[] => cluster.fake.store.list('events').map((e) => (e as unknown as { involvedObject: { name: string } }).involvedObject.name).sort();
    expect(posted()).toEqual(['a', 'a', 'a', 'b', 'c']);
    now += 1000;
    recorder.record(problem('d'));
    recorder.record(problem('a', '9'));
    now += 60_000;
    recorder.record(problem('a', '10'));
    await recorder.flush();
    expect(posted()).toEqual(['a', 'a', 'a', 'a', 'b', 'c', 'd']);
    const event = cluster.fake.store.list('events')[0] as unknown as Record<string, unknown>;
    expect(event).toMatchObject({ type: 'Warning', reason: 'WeftRejected', involvedObject: { kind: 'Pod', namespace: 'shop', apiVersion: 'v1' }, source: { component: 'weft', host: 'node-a' } });
    expect(event.metadata).toMatchObject({ namespace: 'shop', resourceVersion: expect.any(String) as unknown });
    const dropped = (await registry.registry.getSingleMetric('weft_k8s_events_dropped_total')?.get())?.values ?? [];
    expect(dropped.reduce((n, v) => n + v.value, 0)).toBe(4);
  });
});
