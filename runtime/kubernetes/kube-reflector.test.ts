// The reflector against the fake API server: in-cluster TLS and token, paged list, watch, and every fault ending in the server's own state.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startKubeTestCluster, type KubeTestCluster } from '../../test/helpers/kube-apiserver-fake/kube-test-cluster.js';
import { kubeconfigConnection, inClusterConnection } from './kube-config.js';
import { KubeClient } from './kube-client.js';
import { KubeMetrics } from './kube-metrics.js';
import { KubeReflector, type Stripped } from './kube-reflector.js';
import { stripPod, type SlimPod } from './kube-objects.js';
import { WATCHED_RESOURCES } from './watched-resources.js';
import { MetricsRegistry } from '../telemetry/metrics-registry.js';

const PODS = WATCHED_RESOURCES.find((r) => r.resource === 'pods')!;
const WASM = WATCHED_RESOURCES.find((r) => r.resource === 'wasmplugins')!;
const FAST = { backoffInitialMs: 20, backoffMaxMs: 200, inactivityMs: 400, watchTimeoutSeconds: [1, 2] as const, pageSize: 2, absentRecheckMs: 300 };

let cluster: KubeTestCluster;
let client: KubeClient;
let registry: MetricsRegistry;
let abort: AbortController;
let runs: Promise<void>[];

function pod(name: string, v = '1', node = 'node-a') {
  return { metadata: { name, namespace: 'shop', labels: { app: name, v } }, spec: { nodeName: node, serviceAccountName: 'sa' }, status: { phase: 'Running', podIP: `10.0.0.${name.length + Number(v)}` } };
}

/** A reflector plus a log of what its handler saw, to prove nothing was applied twice. */
function reflect(resource = PODS, opts: { listOffThread?: boolean; tuning?: Record<string, unknown>; protobuf?: boolean } = {}) {
  const seen: string[] = [];
  const synced: string[] = [];
  const r = new KubeReflector<Stripped>({
    client,
    resource,
    strip: stripPod,
    metrics: new KubeMetrics(registry),
    tuning: { ...FAST, ...opts.tuning },
    ...(opts.listOffThread === undefined ? {} : { listOffThread: opts.listOffThread }),
    ...(opts.protobuf === undefined ? {} : { protobuf: opts.protobuf }),
    handler: { upsert: (_r, key, o) => seen.push(`upsert ${key} ${o.resourceVersion}`), remove: (_r, key) => seen.push(`remove ${key}`), synced: (res) => synced.push(res) },
  });
  runs.push(r.run(abort.signal));
  return { r, seen, synced };
}

async function until(pred: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** The reflector's items equal the server's objects, by key and resourceVersion. */
function converged(r: KubeReflector<Stripped>, resource = 'pods'): boolean {
  const server = cluster.fake.store.list(resource).map((o) => `${o.metadata.namespace}/${o.metadata.name} ${o.metadata.resourceVersion}`);
  const mine = [...r.items].map(([k, o]) => `${k} ${o.resourceVersion}`).sort();
  return JSON.stringify(server.sort()) === JSON.stringify(mine);
}

function noDuplicates(seen: string[]): void {
  const upserts = seen.filter((s) => s.startsWith('upsert'));
  expect(new Set(upserts).size).toBe(upserts.length);
}

async function metric(name: string, labels: Record<string, string>): Promise<number> {
  const m = await registry.registry.getSingleMetric(name)?.get();
  return (m?.values ?? []).filter((v) => Object.entries(labels).every(([k, val]) => v.labels[k] === val)).reduce((a, v) => a + v.value, 0);
}

beforeEach(async () => {
  cluster = await startKubeTestCluster({ bookmarkIntervalMs: 100 });
  client = new KubeClient(inClusterConnection(cluster.env, cluster.serviceAccountDir));
  registry = new MetricsRegistry();
  abort = new AbortController();
  runs = [];
  for (const n of ['a', 'bb', 'ccc', 'dddd', 'eeeee']) cluster.fake.store.create('pods', pod(n));
});

afterEach(async () => {
  abort.abort();
  await Promise.all(runs);
  await client.close();
  await cluster.close();
});

describe('list and watch', () => {
  it('lists in pages at one resourceVersion, then watches with bookmarks and a timeout', async () => {
    const { r, synced } = reflect();
    await until(() => r.synced, 'first sync');
    expect(synced).toEqual(['pods']);
    const lists = cluster.fake.requests.filter((q) => q.verb === 'list');
    expect(lists.map((q) => q.query.limit)).toEqual(['2', '2', '2']);
    cluster.fake.store.update('pods', pod('a', '2'));
    cluster.fake.store.delete('pods', 'shop', 'bb');
    await until(() => converged(r), 'watch events');
    const watch = cluster.fake.requests.find((q) => q.verb === 'watch');
    expect(watch?.query).toMatchObject({ allowWatchBookmarks: 'true', watch: '1' });
    expect(Number(watch?.query.timeoutSeconds)).toBeGreaterThanOrEqual(1);
    // Watches that end at their timeout resume from the last RV (bookmarks included): no second list.
    await until(() => cluster.fake.requests.filter((q) => q.verb === 'watch').length >= 2, 'a second watch');
    expect(cluster.fake.requests.filter((q) => q.verb === 'list')).toHaveLength(3);
    expect(r.items.get('shop/a')).toMatchObject({ labels: { app: 'a', v: '2' } } satisfies Partial<SlimPod>);
  });

  it('loads a kubeconfig with a client-certificate user and the cluster CA', async () => {
    const file = join(cluster.serviceAccountDir, 'kubeconfig');
    writeFileSync(file, `apiVersion: v1\nkind: Config\ncurrent-context: test\ncontexts:\n- name: test\n  context: { cluster: fake, user: node }\nclusters:\n- name: fake\n  cluster: { server: '${cluster.fake.url}', certificate-authority: ca.crt }\nusers:\n- name: node\n  user: { client-certificate: ${cluster.pki.clientCertFile}, client-key: ${cluster.pki.clientKeyFile} }\n`);
    const conn = kubeconfigConnection([file]);
    expect(conn.origin).toContain('context test');
    await client.close();
    client = new KubeClient(conn);
    const { r } = reflect();
    await until(() => r.synced && converged(r), 'sync with a client certificate');
  });

  it('reaches an IPv6 API server address from KUBERNETES_SERVICE_HOST', async () => {
    const v6 = await startKubeTestCluster({ host: '::1' });
    const conn = inClusterConnection(v6.env, v6.serviceAccountDir);
    expect(conn.server).toBe(`https://[::1]:${v6.fake.port}`);
    const c = new KubeClient(conn);
    const res = await c.request('/api/v1/namespaces');
    expect(res.statusCode).toBe(200);
    await res.body.dump();
    await c.close();
    await v6.close();
  });
});

describe('a big list read on in a worker thread', () => {
  const OFF = { listOffThread: true, tuning: { offThreadAbove: 2 } };

  it('gives the same objects as a list read here, strings pooled again on arrival', async () => {
    for (let i = 0; i < 6; i++) cluster.fake.store.create('pods', { ...pod(`t${i}`), metadata: { name: `t${i}`, namespace: 'shop', labels: { app: 'tëst', v: '1' } } });
    const { r, seen, synced } = reflect(PODS, OFF);
    await until(() => r.synced, 'first sync');
    expect(synced).toEqual(['pods']);
    expect(converged(r)).toBe(true);
    noDuplicates(seen);
    // 11 pods in pages of 2: the first here, the other five from the thread, each counted.
    expect(cluster.fake.requests.filter((q) => q.verb === 'list')).toHaveLength(6);
    expect(await metric('weft_k8s_requests_total', { verb: 'list', code: '200' })).toBe(6);
    const a = r.items.get('shop/t0') as SlimPod;
    const b = r.items.get('shop/t5') as SlimPod;
    expect(a.labels).toEqual({ app: 'tëst', v: '1' });
    expect(a.serviceAccount).toBe('sa');
    // The watch takes over from the list's resourceVersion.
    cluster.fake.store.update('pods', pod('a', '3'));
    await until(() => converged(r), 'watch after an off-thread list');
    expect(b.nodeName).toBe('node-a');
  });

  it.each([
    ['a 500 answer', { kind: 'status', code: 500 } as const, 'server'],
    ['a connection reset', { kind: 'reset' } as const, 'network'],
  ])('%s to the thread: counted, retried with a fresh list, converged', async (_what, fault, reason) => {
    cluster.fake.inject({ fault, verb: 'list', continued: true });
    const { r, seen } = reflect(PODS, OFF);
    await until(() => r.synced, 'sync after the failure');
    expect(converged(r)).toBe(true);
    noDuplicates(seen);
    expect(await metric('weft_k8s_errors_total', { reason })).toBe(1);
    expect(await metric('weft_k8s_relists_total', {})).toBe(2);
  });

  it('stops the thread when the reflector is aborted mid-list', async () => {
    cluster.fake.inject({ fault: { kind: 'halfOpen', afterEvents: 0 }, verb: 'list', continued: true });
    const { r } = reflect(PODS, OFF);
    await until(() => cluster.fake.requests.some((q) => q.verb === 'list' && q.query.continue !== undefined), 'the thread listing');
    abort.abort();
    await Promise.all(runs);
    expect(r.synced).toBe(false);
  });
});

describe('faults: the watcher recovers and converges on the server state, applying nothing twice', () => {
  const churn = () => {
    cluster.fake.store.update('pods', pod('ccc', '7'));
    cluster.fake.store.create('pods', pod('ffffff'));
    cluster.fake.store.delete('pods', 'shop', 'a');
  };

  it('a watch cut in the middle of a line', async () => {
    const { r, seen } = reflect();
    await until(() => r.synced, 'sync');
    cluster.fake.inject({ fault: { kind: 'cutMidLine', afterEvents: 1 }, verb: 'watch' });
    cluster.fake.dropConnections();
    churn();
    await until(() => converged(r), 'convergence');
    noDuplicates(seen);
    expect(await metric('weft_k8s_errors_total', { reason: 'network' })).toBeGreaterThanOrEqual(1);
  });

  it('a silent half-open watch, replaced after the inactivity limit', async () => {
    const { r, seen } = reflect();
    await until(() => r.synced, 'sync');
    cluster.fake.inject({ fault: { kind: 'halfOpen', afterEvents: 0 }, verb: 'watch' });
    cluster.fake.dropConnections();
    churn();
    await until(() => converged(r), 'convergence');
    noDuplicates(seen);
    expect(await metric('weft_k8s_errors_total', { reason: 'stalled' })).toBe(1);
  });

  it('410 Gone after compaction: exactly one relist, diffed', async () => {
    const { r, seen } = reflect();
    await until(() => r.synced, 'sync');
    cluster.fake.inject({ fault: { kind: 'status', code: 500 }, verb: 'watch', times: 3 });
    cluster.fake.dropConnections();
    churn();
    cluster.fake.store.compact(cluster.fake.store.resourceVersion);
    await until(() => converged(r), 'convergence');
    noDuplicates(seen);
    expect(seen).toContain('remove shop/a');
    expect(await metric('weft_k8s_errors_total', { reason: 'gone' })).toBe(1);
    expect(await metric('weft_k8s_relists_total', {})).toBe(2);
  });

  it('401 after the token rotated on the server: the token file is read again', async () => {
    const { r, seen } = reflect();
    await until(() => r.synced, 'sync');
    cluster.fake.setTokens(['not-yet-on-disk']);
    cluster.fake.dropConnections();
    await until(() => cluster.fake.requests.some((q) => q.status === 401), 'a 401');
    churn();
    cluster.rotateToken();
    await until(() => converged(r), 'convergence');
    noDuplicates(seen);
    expect(await metric('weft_k8s_errors_total', { reason: 'unauthorized' })).toBeGreaterThanOrEqual(1);
  });

  it.each([
    [403, 'forbidden'],
    [429, 'throttled'],
    [500, 'server'],
  ] as const)('%i answers are retried with backoff and counted', async (code, reason) => {
    const { r, seen } = reflect();
    await until(() => r.synced, 'sync');
    cluster.fake.inject({ fault: { kind: 'status', code, ...(code === 429 ? { retryAfterSeconds: 1 } : {}) }, verb: 'watch', times: 2 });
    cluster.fake.dropConnections();
    churn();
    await until(() => converged(r), 'convergence');
    noDuplicates(seen);
    expect(await metric('weft_k8s_errors_total', { reason })).toBe(2);
  });

  it('a connection reset before any answer', async () => {
    const { r, seen } = reflect();
    cluster.fake.inject({ fault: { kind: 'reset' }, verb: 'list' });
    await until(() => r.synced, 'sync');
    churn();
    await until(() => converged(r), 'convergence');
    noDuplicates(seen);
  });
});

describe('protobuf (built-in types) and JSON', () => {
  const formats = (verb: string): string[] => [...new Set(cluster.fake.requests.filter((q) => q.verb === verb && q.resource === 'pods').map((q) => q.format))];

  it('lists in protobuf pages with continue, watches protobuf frames, and follows bookmarks', async () => {
    const { r, seen } = reflect();
    await until(() => r.synced, 'sync');
    expect(cluster.fake.requests.filter((q) => q.verb === 'list').map((q) => q.query.continue === undefined)).toEqual([true, false, false]);
    cluster.fake.store.update('pods', pod('a', '2'));
    await until(() => converged(r), 'a watch event');
    expect(r.items.get('shop/a')).toMatchObject({ labels: { app: 'a', v: '2' }, nodeName: 'node-a', serviceAccount: 'sa', ips: ['10.0.0.3'] } satisfies Partial<SlimPod>);
    // A change elsewhere moves the store's resourceVersion; only a bookmark can bring it to this watch.
    cluster.fake.store.create('namespaces', { metadata: { name: 'elsewhere' } });
    await until(() => r.resourceVersion === String(cluster.fake.store.resourceVersion), 'a bookmark');
    expect(formats('list')).toEqual(['protobuf']);
    expect(formats('watch')).toEqual(['protobuf']);
    noDuplicates(seen);
  });

  it('a corrupt watch frame: a decode error, the watch resumes from its resourceVersion, nothing lost or applied twice', async () => {
    const { r, seen } = reflect();
    await until(() => r.synced, 'sync');
    cluster.fake.inject({ fault: { kind: 'corrupt', afterEvents: 1 }, verb: 'watch', resource: 'pods' });
    cluster.fake.dropConnections();
    await until(() => cluster.fake.requests.filter((q) => q.verb === 'watch').length >= 2, 'a new watch');
    cluster.fake.store.update('pods', pod('bb', '5'));
    cluster.fake.store.create('pods', pod('ffffff'));
    await until(() => converged(r), 'convergence');
    noDuplicates(seen);
    expect(await metric('weft_k8s_errors_total', { reason: 'decode' })).toBe(1);
    expect(await metric('weft_k8s_relists_total', {})).toBe(1);
  });

  it('a corrupt list page: a decode error, a fresh list, converged (in the list thread too)', async () => {
    cluster.fake.inject({ fault: { kind: 'corrupt' }, verb: 'list', continued: true, times: 2 });
    const here = reflect();
    await until(() => here.r.synced, 'sync after a corrupt page');
    const thread = reflect(PODS, { listOffThread: true, tuning: { offThreadAbove: 2 } });
    await until(() => thread.r.synced, 'sync after a corrupt page in the thread');
    for (const { r, seen } of [here, thread]) {
      expect(converged(r)).toBe(true);
      noDuplicates(seen);
    }
    expect(await metric('weft_k8s_errors_total', { reason: 'decode' })).toBe(2);
    expect(formats('list')).toEqual(['protobuf']);
  });

  it('JSON when asked for (protobuf: false), and from a server that answers only JSON', async () => {
    const { r, seen } = reflect(PODS, { protobuf: false });
    await until(() => r.synced, 'sync');
    cluster.fake.inject({ fault: { kind: 'cutMidLine', afterEvents: 1 }, verb: 'watch' });
    cluster.fake.dropConnections();
    cluster.fake.store.update('pods', pod('ccc', '7'));
    cluster.fake.store.delete('pods', 'shop', 'a');
    await until(() => converged(r), 'convergence');
    noDuplicates(seen);
    expect([...formats('list'), ...formats('watch')]).toEqual(['json', 'json']);
    const jsonOnly = await startKubeTestCluster({ protobuf: false });
    jsonOnly.fake.store.create('pods', pod('zz'));
    const c = new KubeClient(inClusterConnection(jsonOnly.env, jsonOnly.serviceAccountDir));
    const other = new KubeReflector<Stripped>({ client: c, resource: PODS, strip: stripPod, metrics: new KubeMetrics(new MetricsRegistry()), tuning: FAST, handler: { upsert: () => undefined, remove: () => undefined, synced: () => undefined } });
    const ac = new AbortController();
    const run = other.run(ac.signal);
    try {
      await until(() => other.items.has('shop/zz'), 'a JSON answer to a protobuf request');
      jsonOnly.fake.store.update('pods', pod('zz', '2'));
      await until(() => other.items.get('shop/zz')?.resourceVersion === jsonOnly.fake.store.get('pods', 'shop', 'zz')?.metadata.resourceVersion, 'a JSON watch');
    } finally {
      ac.abort();
      await run;
      await c.close();
      await jsonOnly.close();
    }
  });
});

describe('optional resources', () => {
  it('a missing CRD is reported once, counts as synced, and is picked up when installed', async () => {
    cluster.fake.store.create('wasmplugins', { metadata: { name: 'p', namespace: 'shop' }, spec: { url: 'oci://x' } });
    const { r, synced } = reflect(WASM);
    await until(() => r.synced, 'synced as absent');
    expect(synced).toEqual(['wasmplugins']);
    expect(await metric('weft_k8s_resource_absent', { resource: 'wasmplugins' })).toBe(1);
    cluster.fake.installCrd('wasmplugins');
    await until(() => r.items.size === 1, 'CRD appears');
    expect(await metric('weft_k8s_resource_absent', { resource: 'wasmplugins' })).toBe(0);
    expect(await metric('weft_k8s_errors_total', { reason: 'absent' })).toBe(0);
  });
});
