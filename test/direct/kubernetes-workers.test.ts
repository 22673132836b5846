// The Kubernetes source with workers: 2: pod and Service changes reach every worker as derived snapshots (no reload),
// each worker ending with the primary's configuration, a worker restarted while changes flow included.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configSchema } from '../../runtime/config/config-schema.js';
import { inClusterConnection } from '../../runtime/kubernetes/kube-config.js';
import { attachKubernetesSource } from '../../runtime/kubernetes/attach-kubernetes-source.js';
import type { KubernetesSource } from '../../runtime/kubernetes/kubernetes-source.js';
import { createWorkerPrimary, type WorkerPrimary } from '../../runtime/workers/worker-primary.js';
import { resolveWorkerCount } from '../../runtime/workers/worker-count.js';
import { startKubeTestCluster, type KubeTestCluster } from '../helpers/kube-apiserver-fake/kube-test-cluster.js';
import type { KubeObject } from '../helpers/kube-apiserver-fake/fake-resource-store.js';

let cluster: KubeTestCluster;
let primary: WorkerPrimary;
let source: KubernetesSource;

const config = configSchema.parse({
  node: 'node-a',
  source: 'kubernetes',
  workers: 2,
  accessLog: { enabled: false },
  listeners: { outbound: { address: '127.0.0.1:0' }, inbound: { address: '127.0.0.1:0' }, explicitProxy: { address: '127.0.0.1:0' }, admin: '127.0.0.1:0', metrics: '127.0.0.1:0', readiness: '127.0.0.1:0' },
});

function pod(n: number, app = 'web', node = 'node-b'): KubeObject {
  const ip = `10.7.0.${n}`;
  return { metadata: { name: `p-${n}`, namespace: 'shop', labels: { app } }, spec: { nodeName: node, serviceAccountName: 'sa' }, status: { phase: 'Running', podIP: ip, podIPs: [{ ip }], conditions: [{ type: 'Ready', status: 'True' }] } };
}

async function dump(): Promise<{ workers: { threads: { configSha256: string; version: number }[] } }> {
  return (await fetch(`http://127.0.0.1:${String(primary.ports.admin)}/config_dump`)).json() as never;
}

function metric(text: string, name: string): number {
  return Number(new RegExp(`^${name} (\\d+)`, 'm').exec(text)?.[1] ?? 0);
}

async function scrape(): Promise<string> {
  return (await fetch(`http://127.0.0.1:${String(primary.ports.metrics)}/stats/prometheus`)).text();
}

/** Both workers at their `versions`, holding the same configuration (its sha256); what they hold. */
async function workersAt(versions: number[]): Promise<string | undefined> {
  const threads = (await dump()).workers.threads;
  const [a, b] = threads;
  return threads.length === 2 && a !== undefined && b !== undefined && a.version === versions[0] && b.version === versions[1] && a.configSha256 === b.configSha256 ? a.configSha256 : undefined;
}

async function until(pred: () => Promise<boolean>, what: string): Promise<void> {
  const end = Date.now() + 15_000;
  while (!(await pred())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

beforeAll(async () => {
  cluster = await startKubeTestCluster();
  const s = cluster.fake.store;
  s.create('namespaces', { metadata: { name: 'shop', labels: { 'istio.io/dataplane-mode': 'ambient' } } });
  s.create('services', { metadata: { name: 'web', namespace: 'shop' }, spec: { clusterIP: '10.96.0.1', selector: { app: 'web' }, ports: [{ port: 80, targetPort: 8080 }] } });
  for (let n = 1; n <= 4; n++) s.create('pods', pod(n));
  primary = await createWorkerPrimary(config, { count: resolveWorkerCount(2), accessLogSink: () => undefined });
  source = attachKubernetesSource(primary, config, { connection: inClusterConnection(cluster.env, cluster.serviceAccountDir), recordEvents: false, coalesceMs: 2 });
  await source.whenSynced();
}, 60_000);

afterAll(async () => {
  await source?.stop();
  await primary?.shutdown(0);
  await cluster?.close();
});

describe('kubernetes source with workers: 2', () => {
  it('derives every worker snapshot for pod and Service changes, without a reload', async () => {
    // Each derived snapshot bumps a worker's version as it bumps the primary's: equal steps mean the same changes applied.
    const primaryBefore = primary.state.current.version;
    const workerBefore = (await dump()).workers.threads.map((t) => t.version);
    const shaBefore = await workersAt(workerBefore);
    expect(shaBefore).toBeDefined();
    const before = await scrape();
    const reloads = metric(before, 'weft_config_reloads_total\\{result="applied"\\}');
    const s = cluster.fake.store;
    s.update('pods', pod(2, 'api'));
    s.create('pods', pod(9));
    s.delete('pods', 'shop', 'p-3');
    s.create('services', { metadata: { name: 'api', namespace: 'shop' }, spec: { clusterIP: '10.96.0.2', selector: { app: 'api' }, ports: [{ port: 8080 }] } });
    await until(() => Promise.resolve(primary.state.current.serviceByVip('10.96.0.2', 8080)?.service.endpoints.length === 1 && primary.state.current.workloadByIp('10.7.0.9') !== undefined), 'the primary to derive');
    await source.settled();
    const want = workerBefore.map((v) => v + primary.state.current.version - primaryBefore);
    await until(async () => (await workersAt(want)) !== undefined, 'workers to derive the same snapshots');
    expect(await workersAt(want)).not.toBe(shaBefore);
    const after = await scrape();
    expect(metric(after, 'weft_config_reloads_total\\{result="applied"\\}')).toBe(reloads);
    expect(metric(after, 'weft_k8s_snapshot_applies_total\\{result="patched"\\}')).toBeGreaterThan(0);
    expect(primary.state.current.workloadByIp('10.7.0.3')).toBeUndefined();
    expect(primary.state.current.serviceByVip('10.96.0.1', 80)?.service.endpoints.map((w) => w.name).sort()).toEqual(['p-1', 'p-4', 'p-9']);
  });

  it('a worker that is still starting when changes are sent ends with every change (no patch lost)', async () => {
    const s = cluster.fake.store;
    // Pods churn every 15 ms from before the kill until well after the replacement serves: some changes land while it
    // is spawned but not yet started (the window where patches went only to the running worker).
    let n = 100;
    let churning = true;
    const churn = (async () => {
      while (churning) {
        s.apply('pods', pod(n++ % 250, n % 2 === 0 ? 'web' : 'api'));
        await new Promise((r) => setTimeout(r, 15));
      }
    })();
    const unsettled = (): void => undefined;
    try {
      await new Promise((r) => setTimeout(r, 100));
      await primary.terminateWorker(1);
      await new Promise((r) => setTimeout(r, 50));
      await primary.waitForWorker(1, 30_000);
      await new Promise((r) => setTimeout(r, 300));
    } finally {
      churning = false;
      await churn.catch(unsettled);
    }
    await source.settled();
    const created = n - 100;
    expect(created).toBeGreaterThan(10);
    // Every pod the fake holds is served by the primary, and both workers hold the same configuration.
    await until(async () => {
      const threads = (await dump()).workers.threads;
      return threads.length === 2 && threads[0]?.configSha256 === threads[1]?.configSha256;
    }, 'both workers to hold the same configuration');
    const ips = s.list('pods').map((p) => (p.status as { podIP: string }).podIP).sort();
    expect(primary.state.current.config.workloads.map((w) => w.addresses[0]).sort()).toEqual(ips);
  }, 60_000);
});

