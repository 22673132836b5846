// Incremental correctness: a random sequence of watch events applied incrementally (pod changes derive the snapshot, the
// rest rebuild it) serves the same model as a source built from scratch from the API server's final state.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configSchema } from '../../runtime/config/config-schema.js';
import type { StateSnapshot } from '../../runtime/state/state-snapshot.js';
import type { MetricsRegistry } from '../../runtime/telemetry/metrics-registry.js';
import { startKubeTestCluster, type KubeTestCluster } from '../helpers/kube-apiserver-fake/kube-test-cluster.js';
import { serveKubernetesSource, type ServedSource } from '../helpers/kube-served-source.js';
import type { KubeObject } from '../helpers/kube-apiserver-fake/fake-resource-store.js';
import { prng } from '../helpers/prng.js';

const base = configSchema.parse({ node: 'node-a', source: 'kubernetes' });
const NODES = ['node-a', 'node-b', 'node-c', 'node-d'];
const APPS = ['web', 'api', 'db', 'named', 'other'];
const NAMESPACES = ['a', 'b'];

type Served = ServedSource;
const serve = (c: KubeTestCluster): Served => serveKubernetesSource(c, base);

/** The model a snapshot serves, independent of order (a derived snapshot appends a Service's new endpoints). */
function model(snap: StateSnapshot) {
  const byKey = <T>(xs: readonly T[], key: (x: T) => string) => [...xs].sort((a, b) => key(a).localeCompare(key(b)));
  const workloads = byKey(snap.workloads, (w) => w.uid);
  return {
    workloads,
    services: byKey(snap.services, (s) => s.key).map((s) => ({ ...s, endpoints: s.endpoints.map((e) => e.uid).sort() })),
    byIp: workloads.flatMap((w) => w.addresses.map((ip) => `${ip} ${snap.workloadByIp(ip)?.uid}`)),
    byVip: snap.services.flatMap((s) => s.addresses.flatMap((a) => s.ports.map((p) => `${a}:${p.port} ${snap.serviceByVip(a, p.port)?.service.endpoints.map((e) => e.uid).sort().join(',')}`))).sort(),
    local: snap.localWorkloads().map((w) => w.uid).sort(),
    identities: workloads.map((w) => `${w.identity} ${w.node} ${snap.hostsIdentityOnNode(w.identity, w.node)}`),
    plugins: byKey(snap.config.plugins, (p) => p.name),
    policies: byKey(snap.config.policies, (p) => `${p.namespace}/${p.name}`),
    namespaces: byKey(snap.config.namespaces, (n) => n.name),
    configWorkloads: snap.config.workloads.map((w) => `${w.namespace}/${w.name}`).sort(),
    configServices: byKey(snap.config.services, (sv) => `${sv.namespace}/${sv.name}`),
    byName: snap.services.map((sv) => `${sv.key} ${snap.serviceByName(sv.hostname)?.key} ${snap.serviceByRef(sv.addresses[0] ?? '')?.key}`).sort(),
  };
}

async function counter(m: MetricsRegistry, name: string, labels: Record<string, string>): Promise<number> {
  const values = (await m.registry.getSingleMetric(name)?.get())?.values ?? [];
  return values.filter((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l)).reduce((n, v) => n + v.value, 0);
}

/** Until the source holds every object at the server's resourceVersion and has applied it. */
async function caughtUp(c: KubeTestCluster, s: Served): Promise<void> {
  const want = (): string => ['pods', 'services', 'namespaces'].map((r) => c.fake.store.list(r).map((o) => `${o.metadata.namespace}/${o.metadata.name}@${o.metadata.resourceVersion}`).sort().join(' ')).join('|');
  const have = (): string => ['pods', 'services', 'namespaces'].map((r) => [...(s.source.reflectors.find((x) => x.resource.resource === r)?.items.values() ?? [])].map((o) => `${o.namespace}/${o.name}@${o.resourceVersion}`).sort().join(' ')).join('|');
  for (let i = 0; i < 1000 && want() !== have(); i++) await new Promise((r) => setTimeout(r, 10));
  expect(have()).toBe(want());
  await s.source.settled();
}

let cluster: KubeTestCluster;
let live: Served;
const random = prng(Number(process.env.WEFT_TEST_SEED ?? 17));
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)] as T;
let podSeq = 0;
let ipSeq = 0;
const freeIps: string[] = [];

function newPod(overrides: { ip?: string; bad?: boolean; remote?: boolean } = {}): KubeObject {
  const n = podSeq++;
  const ip = overrides.ip ?? `10.7.${(ipSeq >> 8) & 255}.${ipSeq++ & 255}`;
  return {
    metadata: { name: `p-${n}`, namespace: pick(NAMESPACES), labels: { app: pick(APPS), ...(random() < 0.5 ? { tier: 'be' } : {}) }, ...(overrides.bad === true ? { annotations: { 'weft.dev/plugins': 'no-such-plugin' } } : {}) },
    spec: { nodeName: pick(overrides.remote === true ? NODES.slice(1) : NODES), serviceAccountName: pick(['sa-1', 'sa-2']), containers: [{ name: 'c', ports: [{ name: 'http', containerPort: random() < 0.5 ? 8080 : 9090 }] }] },
    status: { phase: 'Running', podIP: ip, podIPs: [{ ip }], conditions: [{ type: 'Ready', status: random() < 0.8 ? 'True' : 'False' }] },
  };
}

type Pod = KubeObject & { spec: { nodeName: string }; status: { podIP: string; podIPs: { ip: string }[]; phase: string; conditions: { type: string; status: string }[] } };

let svcSeq = 0;

/** One random Service change: created (now and then naming a plugin that does not exist), deleted, re-ported, re-addressed, re-selected. */
function serviceStep(): void {
  const s = cluster.fake.store;
  const extras = s.list('services').filter((o) => o.metadata.name.startsWith('extra-')) as (KubeObject & { spec: { clusterIP: string; selector: Record<string, string>; ports: { name: string; port: number; targetPort: number }[] } })[];
  const r = random();
  const some = extras.length === 0 ? undefined : pick(extras);
  if (r < 0.4 || some === undefined) {
    const n = svcSeq++;
    const ip = `10.96.1.${n & 255}`;
    s.create('services', { metadata: { name: `extra-${n}`, namespace: pick(NAMESPACES), ...(random() < 0.1 ? { annotations: { 'weft.dev/plugins': 'no-such-plugin' } } : {}) }, spec: { clusterIP: ip, clusterIPs: [ip], selector: { app: pick(APPS) }, ports: [{ name: 'http', port: 80, targetPort: 8080 }] } });
  } else if (r < 0.6) s.delete('services', some.metadata.namespace, some.metadata.name);
  else if (r < 0.75) s.update('services', { ...some, spec: { ...some.spec, ports: [{ name: 'http', port: some.spec.ports[0]?.port === 80 ? 81 : 80, targetPort: random() < 0.5 ? 8080 : 9090 }] } });
  else if (r < 0.85) {
    const ip = `10.96.2.${svcSeq++ & 255}`;
    s.update('services', { ...some, spec: { ...some.spec, clusterIP: ip, clusterIPs: [ip] } });
  } else s.update('services', { ...some, spec: { ...some.spec, selector: random() < 0.5 ? { app: pick(APPS), tier: 'be' } : { app: pick(APPS) } } });
}

/** One random change to the cluster; `remote` keeps to pods on other nodes (the derived path), else anything may change. */
function step(remote: boolean): void {
  const s = cluster.fake.store;
  const pods = (s.list('pods') as Pod[]).filter((p) => !remote || p.spec.nodeName !== 'node-a');
  const r = remote ? random() * 0.8 : random();
  const some = pods.length === 0 ? undefined : pick(pods);
  if (r < 0.2 || some === undefined) s.create('pods', newPod({ bad: random() < 0.05, remote }));
  else if (r < 0.35) s.update('pods', { ...some, metadata: { ...some.metadata, labels: { app: pick(APPS), ...(random() < 0.5 ? { tier: 'be' } : {}) } } });
  else if (r < 0.45) {
    const ip = `10.8.${(ipSeq >> 8) & 255}.${ipSeq++ & 255}`;
    s.update('pods', { ...some, status: { ...some.status, podIP: ip, podIPs: [{ ip }] } });
  } else if (r < 0.6) s.update('pods', { ...some, status: { ...some.status, conditions: [{ type: 'Ready', status: some.status.conditions[0]?.status === 'True' ? 'False' : 'True' }] } });
  else if (r < 0.65) s.update('pods', { ...some, status: { ...some.status, phase: 'Succeeded' } });
  else if (r < 0.75) {
    s.delete('pods', some.metadata.namespace, some.metadata.name);
    freeIps.push(some.status.podIP);
  } else if (r < 0.8 && freeIps.length > 0) s.create('pods', newPod({ ip: freeIps.shift() as string, remote }));
  else if (r < 0.85) {
    // The same pod moved to another node (a StatefulSet pod rescheduled): local ↔ remote.
    s.update('pods', { ...some, spec: { ...some.spec, nodeName: pick(remote ? NODES.slice(1) : NODES) } });
  } else if (r < 0.9) {
    const ns = s.get('namespaces', undefined, pick(NAMESPACES)) as KubeObject;
    const ambient = ns.metadata.labels?.['istio.io/dataplane-mode'] === 'ambient';
    s.update('namespaces', { ...ns, metadata: { ...ns.metadata, labels: ambient ? {} : { 'istio.io/dataplane-mode': 'ambient' } } });
  } else if (r < 0.93) {
    const svc = s.get('services', 'a', 'web') as KubeObject & { spec: { selector: Record<string, string> } };
    s.update('services', { ...svc, spec: { ...svc.spec, selector: { app: pick(APPS) } } });
  } else if (r < 0.97) serviceStep();
  else {
    const name = `p-${Math.floor(random() * podSeq)}`;
    const pod = pods.find((p) => p.metadata.name === name);
    if (pod !== undefined) s.update('pods', { ...pod, metadata: { ...pod.metadata, labels: { ...pod.metadata.labels, extra: String(random()) } } });
  }
}

beforeAll(async () => {
  cluster = await startKubeTestCluster();
  const s = cluster.fake.store;
  s.create('namespaces', { metadata: { name: 'a', labels: { 'istio.io/dataplane-mode': 'ambient' } } });
  s.create('namespaces', { metadata: { name: 'b' } });
  s.create('services', { metadata: { name: 'web', namespace: 'a' }, spec: { clusterIP: '10.96.0.1', selector: { app: 'web' }, ports: [{ port: 80, targetPort: 8080 }] } });
  s.create('services', { metadata: { name: 'api', namespace: 'a' }, spec: { clusterIP: '10.96.0.2', selector: { app: 'api', tier: 'be' }, ports: [{ name: 'http', port: 80, targetPort: 8080 }] } });
  s.create('services', { metadata: { name: 'named', namespace: 'a' }, spec: { clusterIP: '10.96.0.3', selector: { app: 'named' }, ports: [{ port: 80, targetPort: 'http' }] } });
  s.create('services', { metadata: { name: 'db', namespace: 'b' }, spec: { clusterIP: '10.96.0.4', selector: { app: 'db' }, ports: [{ port: 5432 }] } });
  s.create('services', { metadata: { name: 'headless', namespace: 'b' }, spec: { clusterIP: 'None', selector: { app: 'web' }, ports: [{ port: 80 }] } });
  for (let i = 0; i < 40; i++) s.create('pods', newPod());
  live = serve(cluster);
  await live.source.whenSynced();
});

afterAll(async () => {
  await live.source.stop();
  await cluster.close();
});

describe('incremental snapshots', () => {
  it('equal a snapshot built from scratch from the final state, after 60 bursts of random events', async () => {
    for (let burst = 0; burst < 60; burst++) {
      const remote = random() < 0.7;
      const n = 1 + Math.floor(random() * (remote ? 5 : 19));
      for (let i = 0; i < n; i++) step(remote);
      // Service changes alone take the derived path too.
      if (remote && random() < 0.4) serviceStep();
      // Some bursts land while the previous one is still being applied, some after it settled.
      if (random() < 0.3) await caughtUp(cluster, live);
      else await new Promise((r) => setTimeout(r, Math.floor(random() * 6)));
    }
    await caughtUp(cluster, live);
    const fresh = serve(cluster);
    try {
      await fresh.source.whenSynced();
      await caughtUp(cluster, fresh);
      expect(model(live.state.current)).toEqual(model(fresh.state.current));
      const rejected = (s: Served) => s.source.dump().rejected.map((p) => `${p.resource} ${p.namespace}/${p.name} ${p.reason}`).sort();
      expect(rejected(live)).toEqual(rejected(fresh));
      // Both paths ran: pod and Service changes derived the snapshot, namespace changes (and local pods) rebuilt it.
      expect(await counter(live.metrics, 'weft_k8s_snapshot_applies_total', { result: 'patched' })).toBeGreaterThan(10);
      expect(await counter(live.metrics, 'weft_k8s_snapshot_applies_total', { result: 'applied' })).toBeGreaterThan(3);
    } finally {
      await fresh.source.stop();
    }
  });

  it('derives the snapshot for a Service change alone: new port and endpoints served, no rebuild', async () => {
    await caughtUp(cluster, live);
    const applied = await counter(live.metrics, 'weft_k8s_snapshot_applies_total', { result: 'applied' });
    const patched = await counter(live.metrics, 'weft_k8s_snapshot_applies_total', { result: 'patched' });
    const s = cluster.fake.store;
    const db = s.get('services', 'b', 'db') as KubeObject & { spec: Record<string, unknown> };
    s.update('services', { ...db, spec: { ...db.spec, selector: { app: 'web' }, ports: [{ port: 5433 }] } });
    await caughtUp(cluster, live);
    const snap = live.state.current;
    expect(snap.serviceByVip('10.96.0.4', 5432)).toBeUndefined();
    const web = snap.workloads.filter((w) => w.namespace === 'b' && w.labels.app === 'web').map((w) => w.uid).sort();
    expect(snap.serviceByVip('10.96.0.4', 5433)?.service.endpoints.map((w) => w.uid).sort()).toEqual(web);
    expect(snap.serviceByName('db.b.svc.cluster.local')?.ports.map((p) => p.port)).toEqual([5433]);
    expect(live.source.dump().origins.services?.['b/db']).toMatchObject({ source: 'kubernetes', kind: 'Service', resourceVersion: s.get('services', 'b', 'db')?.metadata.resourceVersion });
    expect(await counter(live.metrics, 'weft_k8s_snapshot_applies_total', { result: 'applied' })).toBe(applied);
    expect(await counter(live.metrics, 'weft_k8s_snapshot_applies_total', { result: 'patched' })).toBe(patched + 1);
  });
});
