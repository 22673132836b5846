// EndpointSlices: a Service without a selector gets its endpoints from its hand-written (or mirrored) slices; slices the
// controller derives from selectors are never listed (the pods already say it all).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configSchema } from '../../runtime/config/config-schema.js';
import type { ProxyState } from '../../runtime/state/proxy-state.js';
import type { KubernetesSource } from '../../runtime/kubernetes/kubernetes-source.js';
import { serveKubernetesSource } from '../helpers/kube-served-source.js';
import { startKubeTestCluster, type KubeTestCluster } from '../helpers/kube-apiserver-fake/kube-test-cluster.js';
import type { KubeObject } from '../helpers/kube-apiserver-fake/fake-resource-store.js';

const base = configSchema.parse({ node: 'node-a', source: 'kubernetes' });
let cluster: KubeTestCluster;
let source: KubernetesSource;
let state: ProxyState;

const slice = (name: string, service: string, managedBy: string, endpoints: { addresses: string[]; conditions?: { ready: boolean } }[]): KubeObject => ({
  metadata: { name, namespace: 'ext', labels: { 'kubernetes.io/service-name': service, 'endpointslice.kubernetes.io/managed-by': managedBy } },
  addressType: 'IPv4',
  endpoints,
  ports: [{ name: 'pg', port: 6432, protocol: 'TCP' }],
});

async function until(check: () => boolean): Promise<void> {
  for (let i = 0; i < 300 && !check(); i++) await new Promise((r) => setTimeout(r, 10));
  expect(check()).toBe(true);
}

beforeAll(async () => {
  cluster = await startKubeTestCluster();
  const s = cluster.fake.store;
  s.create('namespaces', { metadata: { name: 'ext' } });
  s.create('pods', { metadata: { name: 'web-1', namespace: 'ext', labels: { app: 'web' } }, spec: { nodeName: 'node-b', serviceAccountName: 'web' }, status: { phase: 'Running', podIP: '10.1.0.1', conditions: [{ type: 'Ready', status: 'True' }] } });
  s.create('services', { metadata: { name: 'db', namespace: 'ext' }, spec: { clusterIP: '10.96.1.1', ports: [{ name: 'pg', port: 5432, targetPort: 5432 }] } });
  s.create('services', { metadata: { name: 'web', namespace: 'ext' }, spec: { clusterIP: '10.96.1.2', selector: { app: 'web' }, ports: [{ name: 'pg', port: 80, targetPort: 8080 }] } });
  s.create('endpointslices', slice('db-abc', 'db', 'staff', [{ addresses: ['192.168.10.1'] }, { addresses: ['192.168.10.2'], conditions: { ready: false } }, { addresses: ['10.1.0.1'] }]));
  s.create('endpointslices', slice('web-xyz', 'web', 'endpointslice-controller.k8s.io', [{ addresses: ['10.1.0.1'] }, { addresses: ['10.9.9.9'] }]));
  ({ source, state } = serveKubernetesSource(cluster, base));
  await source.whenSynced();
});

afterAll(async () => {
  await source.stop();
  await cluster.close();
});

describe('EndpointSlices', () => {
  it('give a selector-less Service its endpoints, ports and readiness; never local, never a pod twice', () => {
    const db = state.current.serviceByName('db.ext');
    expect(db?.endpoints.map((e) => `${e.addresses.join()} ${e.status} ${e.protocol} local=${e.local}`).sort()).toEqual(['192.168.10.1 Healthy TCP local=false', '192.168.10.2 Unhealthy TCP local=false']);
    expect(db?.ports).toEqual([{ name: 'pg', port: 5432, targetPort: 6432 }]);
    // The pod's address stays the pod (with its identity); the controller's slice for `web` was never listed.
    expect(state.current.workloadByIp('10.1.0.1')?.uid).toBe('ext/web-1');
    expect(state.current.workloadByIp('10.9.9.9')).toBeUndefined();
    expect(state.current.serviceByName('web.ext')?.endpoints.map((e) => e.uid)).toEqual(['ext/web-1']);
    const sliceLists = cluster.fake.requests.filter((r) => r.resource === 'endpointslices' && r.verb === 'list');
    expect(sliceLists[0]?.query.labelSelector).toBe('endpointslice.kubernetes.io/managed-by!=endpointslice-controller.k8s.io');
    expect(source.dump().origins.workloads?.['ext/db-abc-192-168-10-1']).toMatchObject({ source: 'kubernetes', kind: 'EndpointSlice', name: 'db-abc' });
  });

  it('follows slice changes and removal', async () => {
    const s = cluster.fake.store;
    s.update('endpointslices', slice('db-abc', 'db', 'staff', [{ addresses: ['192.168.10.3'] }]));
    await until(() => state.current.serviceByName('db.ext')?.endpoints.map((e) => e.addresses[0]).join() === '192.168.10.3');
    expect(state.current.workloadByIp('192.168.10.1')).toBeUndefined();
    s.delete('endpointslices', 'ext', 'db-abc');
    await until(() => state.current.serviceByName('db.ext')?.endpoints.length === 0);
    expect(state.current.serviceByName('db.ext')?.ports).toEqual([{ name: 'pg', port: 5432, targetPort: 5432 }]);
  });
});
