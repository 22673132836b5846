// A cluster's objects and a hand-written weft.yaml describing the same mesh give the same model; bad objects are reported on themselves and route around.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfigText } from '../../runtime/config/config-load.js';
import { configSchema, type WeftConfig } from '../../runtime/config/config-schema.js';
import { StateSnapshot } from '../../runtime/state/state-snapshot.js';
import { MetricsRegistry } from '../../runtime/telemetry/metrics-registry.js';
import { inClusterConnection } from '../../runtime/kubernetes/kube-config.js';
import { KubernetesSource } from '../../runtime/kubernetes/kubernetes-source.js';
import type { ReloadResult } from '../../runtime/app.js';
import { startKubeTestCluster, type KubeTestCluster } from '../helpers/kube-apiserver-fake/kube-test-cluster.js';

const SHA = 'a'.repeat(64);
let cluster: KubeTestCluster;
let source: KubernetesSource;
const applied: WeftConfig[] = [];

const base = configSchema.parse({ node: 'node-a', source: 'kubernetes' });

function cluster1(c: KubeTestCluster): void {
  const s = c.fake.store;
  c.fake.installCrd('wasmplugins');
  c.fake.installCrd('authorizationpolicies');
  s.create('namespaces', { metadata: { name: 'shop', labels: { 'istio.io/dataplane-mode': 'ambient' }, annotations: { 'weft.dev/plugins': 'add-header', 'weft.dev/plugin-config.add-header': '{"level":"ns"}', 'kubectl.kubernetes.io/last-applied-configuration': '{}' } } });
  s.create('namespaces', { metadata: { name: 'legacy' } });
  const ready = { conditions: [{ type: 'Ready', status: 'True' }] };
  const container = { name: 'app', image: 'x', ports: [{ name: 'http', containerPort: 8080 }] };
  s.create('pods', { metadata: { name: 'web-1', namespace: 'shop', labels: { app: 'web' }, managedFields: [{ manager: 'kubectl' }] }, spec: { nodeName: 'node-a', serviceAccountName: 'web', containers: [container] }, status: { phase: 'Running', podIP: '10.1.0.1', podIPs: [{ ip: '10.1.0.1' }], ...ready } });
  s.create('pods', { metadata: { name: 'web-2', namespace: 'shop', labels: { app: 'web', 'istio.io/dataplane-mode': 'none' } }, spec: { nodeName: 'node-b', serviceAccountName: 'web', containers: [container] }, status: { phase: 'Running', podIP: '10.1.0.2' } });
  s.create('pods', { metadata: { name: 'db-1', namespace: 'shop', labels: { app: 'db' }, annotations: { 'weft.dev/plugins': '' } }, spec: { nodeName: 'node-a' }, status: { phase: 'Running', podIP: '10.1.0.3', ...ready } });
  s.create('pods', { metadata: { name: 'old-1', namespace: 'legacy', labels: { app: 'old' }, annotations: { 'weft.dev/plugins': 'add-header' } }, spec: { nodeName: 'node-b', serviceAccountName: 'old' }, status: { phase: 'Running', podIP: '10.1.0.4', ...ready } });
  s.create('pods', { metadata: { name: 'host-agent', namespace: 'legacy' }, spec: { nodeName: 'node-a', hostNetwork: true }, status: { phase: 'Running', podIP: '192.168.0.1' } });
  s.create('pods', { metadata: { name: 'job-1', namespace: 'shop' }, spec: { nodeName: 'node-a' }, status: { phase: 'Succeeded', podIP: '10.1.0.9' } });
  s.create('pods', { metadata: { name: 'bad-1', namespace: 'shop', annotations: { 'weft.dev/plugin-config.add-header': '{not json' } }, spec: { nodeName: 'node-a' }, status: { phase: 'Running', podIP: '10.1.0.5' } });
  s.create('services', { metadata: { name: 'web', namespace: 'shop', annotations: { 'weft.dev/plugins': 'stats' } }, spec: { clusterIP: '10.96.0.10', clusterIPs: ['10.96.0.10'], selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 'http', protocol: 'TCP' }, { name: 'dns', port: 53, protocol: 'UDP' }] } });
  s.create('services', { metadata: { name: 'old', namespace: 'legacy' }, spec: { clusterIP: '10.96.0.11', selector: { app: 'old' }, ports: [{ port: 5432, targetPort: 5432, appProtocol: 'tcp' }] } });
  s.create('services', { metadata: { name: 'ext', namespace: 'legacy' }, spec: { type: 'ExternalName', ports: [{ port: 80 }] } });
  s.create('wasmplugins', { metadata: { name: 'add-header', namespace: 'shop' }, spec: { url: 'file:///plugins/add-header.wasm', sha256: SHA, phase: 'STATS', priority: 10, pluginConfig: { level: 'plugin' } } });
  s.create('wasmplugins', { metadata: { name: 'add-header', namespace: 'legacy' }, spec: { url: 'registry.example/add-header:1', failStrategy: 'FAIL_OPEN' } });
  s.create('wasmplugins', { metadata: { name: 'stats', namespace: 'shop' }, spec: { url: 'file:///plugins/stats.wasm', selector: { matchLabels: { app: 'db' } } } });
  s.create('wasmplugins', { metadata: { name: 'bad-sha', namespace: 'shop' }, spec: { url: 'file:///plugins/x.wasm', sha256: 'xyz' } });
  s.create('authorizationpolicies', { metadata: { name: 'allow-web', namespace: 'shop' }, spec: { selector: { matchLabels: { app: 'web' } }, rules: [{ from: [{ source: { namespaces: ['shop'], serviceAccounts: ['shop/web'] } }], to: [{ operation: { ports: ['8080'] } }] }] } });
  s.create('authorizationpolicies', { metadata: { name: 'deny-jwt', namespace: 'shop' }, spec: { action: 'DENY', rules: [{ from: [{ source: { requestPrincipals: ['*'], ipBlocks: ['10.9.0.0/16'] } }] }, { from: [{ source: { remoteIpBlocks: ['1.2.3.4'] } }] }] } });
  s.create('authorizationpolicies', { metadata: { name: 'allow-jwt', namespace: 'shop' }, spec: { rules: [{ from: [{ source: { requestPrincipals: ['*'] } }] }, { to: [{ operation: { methods: ['GET'] } }] }] } });
  s.create('authorizationpolicies', { metadata: { name: 'svc-l7', namespace: 'shop' }, spec: { targetRefs: [{ kind: 'Service', group: '', name: 'web' }], rules: [{ to: [{ operation: { paths: ['/api/*'] } }] }] } });
  s.create('authorizationpolicies', { metadata: { name: 'audit', namespace: 'istio-system' }, spec: { action: 'AUDIT', rules: [{}] } });
}

const HAND_WRITTEN = `
node: node-a
namespaces:
  - { name: shop, labels: { istio.io/dataplane-mode: ambient }, annotations: { weft.dev/plugins: add-header.shop, weft.dev/plugin-config.add-header.shop: '{"level":"ns"}' } }
  - { name: legacy }
workloads:
  - { name: web-1, namespace: shop, serviceAccount: web, addresses: [10.1.0.1], node: node-a, protocol: HBONE, labels: { app: web } }
  - { name: web-2, namespace: shop, serviceAccount: web, addresses: [10.1.0.2], node: node-b, protocol: TCP, status: Unhealthy, labels: { app: web, istio.io/dataplane-mode: none } }
  - { name: db-1, namespace: shop, addresses: [10.1.0.3], node: node-a, protocol: HBONE, labels: { app: db }, annotations: { weft.dev/plugins: stats.shop } }
  - { name: old-1, namespace: legacy, serviceAccount: old, addresses: [10.1.0.4], node: node-b, labels: { app: old }, annotations: { weft.dev/plugins: add-header.legacy } }
services:
  - { name: web, namespace: shop, addresses: [10.96.0.10], ports: [{ name: http, port: 80, targetPort: 8080, appProtocol: http }], selector: { app: web }, annotations: { weft.dev/plugins: stats.shop } }
  - { name: old, namespace: legacy, addresses: [10.96.0.11], ports: [{ port: 5432, targetPort: 5432, appProtocol: tcp }], selector: { app: old } }
plugins:
  - { name: add-header.shop, pluginName: add-header, url: file:///plugins/add-header.wasm, sha256: ${SHA}, phase: STATS, priority: 10, config: { level: plugin } }
  - { name: add-header.legacy, pluginName: add-header, url: oci://registry.example/add-header:1, failStrategy: FAIL_OPEN }
  - { name: stats.shop, pluginName: stats, url: file:///plugins/stats.wasm }
policies:
  - name: allow-web
    namespace: shop
    selector: { matchLabels: { app: web } }
    rules: [{ from: [{ source: { principals: [cluster.local/ns/shop/sa/web], namespaces: [shop] } }], to: [{ operation: { ports: ['8080'] } }] }]
  - { name: deny-jwt, namespace: shop, action: DENY, rules: [{ from: [{ source: { ipBlocks: [10.9.0.0/16] } }] }, { from: [{ source: {} }] }] }
  - { name: allow-jwt, namespace: shop, rules: [{ to: [{ operation: { methods: [GET] } }] }] }
  - { name: svc-l7, namespace: shop, targetRef: { kind: Service, name: web }, rules: [{ to: [{ operation: { paths: ['/api/*'] } }] }] }
`;

/** The model a snapshot serves, independent of list order. */
function model(config: WeftConfig) {
  const snap = new StateSnapshot(config, 1);
  const byKey = <T>(xs: readonly T[], key: (x: T) => string) => [...xs].sort((a, b) => key(a).localeCompare(key(b)));
  return {
    workloads: byKey(snap.workloads, (w) => w.uid),
    services: byKey(snap.services, (s) => s.key).map((s) => ({ ...s, endpoints: s.endpoints.map((e) => e.uid).sort() })),
    plugins: byKey(config.plugins, (p) => p.name),
    policies: byKey(config.policies, (p) => `${p.namespace}/${p.name}`),
    namespaces: byKey(config.namespaces, (n) => n.name),
  };
}

beforeAll(async () => {
  cluster = await startKubeTestCluster();
  cluster1(cluster);
  source = new KubernetesSource({
    base,
    connection: inClusterConnection(cluster.env, cluster.serviceAccountDir),
    target: {
      reload: (c): Promise<ReloadResult> => {
        applied.push(c);
        return Promise.resolve({ ok: true });
      },
      recordRejectedReload: () => undefined,
    },
    metrics: new MetricsRegistry(),
    coalesceMs: 10,
  });
  source.start();
  await source.whenSynced();
});

afterAll(async () => {
  await source.stop();
  await cluster.close();
});

describe('the same mesh from Kubernetes and from weft.yaml', () => {
  it('yields identical snapshots', () => {
    const file = parseConfigText(HAND_WRITTEN);
    if (!file.ok) throw new Error(JSON.stringify(file.problems));
    const fromCluster = applied.at(-1);
    expect(model(fromCluster)).toEqual(model(file.config));
    // Listeners, state and limits still come from the file.
    expect(fromCluster.listeners).toEqual(base.listeners);
    expect(fromCluster.source).toBe('kubernetes');
  });

  it('reports each bad object once (log, metric, Event) and leaves it out', async () => {
    const rejected = source.dump().rejected.map((p) => `${p.resource} ${p.namespace}/${p.name}: ${p.reason}`).sort();
    expect(rejected).toEqual([
      'authorizationpolicies istio-system/audit: action AUDIT is not supported (weft enforces ALLOW and DENY; AUDIT and CUSTOM need an external provider)',
      expect.stringMatching(/^pods shop\/bad-1: annotation weft.dev\/plugin-config.add-header is not valid JSON/),
      expect.stringMatching(/^wasmplugins shop\/bad-sha: spec.sha256: expected 64 lower-case hex digits/),
    ]);
    const events = () => cluster.fake.store.list('events');
    for (let i = 0; i < 100 && events().length < 3; i++) await new Promise((r) => setTimeout(r, 20));
    const evs = events().map((e) => e as unknown as { involvedObject: { kind: string; name: string }; reason: string; type: string });
    expect(evs.map((e) => `${e.type} ${e.reason} ${e.involvedObject.kind}/${e.involvedObject.name}`).sort()).toEqual(['Warning WeftRejected AuthorizationPolicy/audit', 'Warning WeftRejected Pod/bad-1', 'Warning WeftRejected WasmPlugin/bad-sha']);
  });

  it('shows each entry\'s origin with the object\'s name and resourceVersion', () => {
    const origins = source.dump().origins;
    const pod = cluster.fake.store.get('pods', 'shop', 'web-1')!;
    expect(origins.workloads?.['shop/web-1']).toEqual({ source: 'kubernetes', kind: 'Pod', namespace: 'shop', name: 'web-1', resourceVersion: pod.metadata.resourceVersion });
    expect(origins.plugins?.['add-header.shop']).toMatchObject({ source: 'kubernetes', kind: 'WasmPlugin', name: 'add-header' });
  });

  it('keeps serving the last good version of an object that turns bad, and takes the fix', async () => {
    const s = cluster.fake.store;
    const web1 = s.get('pods', 'shop', 'web-1')!;
    const count = applied.length;
    s.update('pods', { ...web1, metadata: { ...web1.metadata, annotations: { 'weft.dev/plugins': 'no-such-plugin' } } });
    for (let i = 0; i < 200 && applied.length === count; i++) await new Promise((r) => setTimeout(r, 10));
    const during = applied.at(-1).workloads.find((w) => w.name === 'web-1');
    expect(during?.annotations).toEqual({});
    expect(source.dump().rejected.find((p) => p.name === 'web-1')).toMatchObject({ lastGoodServing: true, reason: expect.stringContaining('no WasmPlugin shop/no-such-plugin') });
    s.update('pods', { ...web1, metadata: { ...web1.metadata, annotations: { 'weft.dev/plugins': 'stats' } } });
    for (let i = 0; i < 200 && applied.at(-1).workloads.find((w) => w.name === 'web-1')?.annotations['weft.dev/plugins'] !== 'stats.shop'; i++) await new Promise((r) => setTimeout(r, 10));
    expect(applied.at(-1).workloads.find((w) => w.name === 'web-1')?.annotations).toEqual({ 'weft.dev/plugins': 'stats.shop' });
    expect(source.dump().rejected.find((p) => p.name === 'web-1')).toBeUndefined();
  });

  it('merges a reloaded file with the cluster: the file keeps its own services, plugins and policies', async () => {
    const file = configSchema.parse({ ...base, policies: [{ name: 'file-deny', namespace: 'legacy', action: 'DENY', rules: [{ from: [{ source: { namespaces: ['shop'] } }] }] }] });
    expect(await source.reload(file)).toEqual({ ok: true });
    const merged = applied.at(-1);
    expect(merged.policies[0]?.name).toBe('file-deny');
    expect(merged.policies.map((p) => p.name).sort()).toEqual(['allow-jwt', 'allow-web', 'deny-jwt', 'file-deny', 'svc-l7']);
    expect(merged.workloads.length).toBe(4);
    expect(source.dump().origins.policies?.['legacy/file-deny']).toEqual({ source: 'file' });
  });

  it('refuses a file that defines workloads alongside the Kubernetes source', () => {
    const r = parseConfigText('source: kubernetes\nworkloads:\n  - { name: a, addresses: [10.0.0.1] }\n');
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.problems[0]?.message).toMatch(/with source: kubernetes the workloads come from the cluster/);
  });
});
