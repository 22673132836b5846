// Kubernetes source benchmark at SIG-scalability's cluster size, served by the fake API server in its own process: start-to-ready,
// heap against a file-configured weft holding the same model, event-to-snapshot latency under pod churn, and a 10,000-reconnect soak.
// Numbers for the report, never assertions. Run compiled: node --expose-gc dist/test/bench/kubernetes.js
import { spawn } from 'node:child_process';
import http from 'node:http';
import { readdirSync } from 'node:fs';
import type net from 'node:net';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { createApp } from '../../runtime/app.js';
import { configSchema, type WeftConfig, type WorkloadConfig } from '../../runtime/config/config-schema.js';
import { setLogLevel } from '../../runtime/log.js';
import { MetricsRegistry } from '../../runtime/telemetry/metrics-registry.js';
import { inClusterConnection } from '../../runtime/kubernetes/kube-config.js';
import { KubeClient } from '../../runtime/kubernetes/kube-client.js';
import { KubeMetrics } from '../../runtime/kubernetes/kube-metrics.js';
import { KubeMeshModel } from '../../runtime/kubernetes/kube-mesh-model.js';
import { stripNamespace, stripPod, stripService } from '../../runtime/kubernetes/kube-objects.js';
import { KubeReflector, type Stripped } from '../../runtime/kubernetes/kube-reflector.js';
import { KubernetesSource } from '../../runtime/kubernetes/kubernetes-source.js';
import { WATCHED_RESOURCES } from '../../runtime/kubernetes/watched-resources.js';
import { startKubeTestCluster } from '../helpers/kube-apiserver-fake/kube-test-cluster.js';
import { SIG_SCALABILITY, loadScale, scalePod, scaleService } from '../helpers/kube-apiserver-fake/fake-scale.js';

const SELF = fileURLToPath(import.meta.url);
/**
 * WEFT_BENCH_K8S_SCALE=0.1 runs a tenth of the cluster (services and pods; 110 local pods stay).
 * WEFT_BENCH_K8S_FORMATS=protobuf,json runs the Kubernetes-source part once per wire format, in that order, against the same
 * fake API server (an A/B in one sitting; default protobuf, what weft asks for). WEFT_BENCH_K8S_ONLY=kube skips the
 * file-source baseline and the reconnect soak.
 */
const FRACTION = Number(process.env.WEFT_BENCH_K8S_SCALE ?? 1);
const SHAPE = { ...SIG_SCALABILITY, services: Math.round(SIG_SCALABILITY.services * FRACTION), pods: Math.round(SIG_SCALABILITY.pods * FRACTION) };
const MB = 1024 * 1024;
const wallUs = (): number => Math.round((performance.timeOrigin + performance.now()) * 1000);
const percentile = (xs: number[], p: number): number => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))] ?? NaN;

function heapAfterGc(): number {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) throw new Error('run with node --expose-gc');
  for (let i = 0; i < 3; i++) gc();
  return process.memoryUsage().heapUsed;
}

const base = (): WeftConfig => configSchema.parse({ node: SHAPE.localNode, source: 'kubernetes', accessLog: { enabled: false }, listeners: { outbound: { address: '127.0.0.1:0' }, inbound: { address: '127.0.0.1:0' }, explicitProxy: { address: '127.0.0.1:0' }, admin: '127.0.0.1:0', metrics: '127.0.0.1:0', readiness: '127.0.0.1:0' } });

/** The fake API server process: the whole cluster, plus a control port that churns pods (`POST /churn?rate=&seconds=`) or changes a Service (`POST /touch-service`). */
async function fakeProcess(): Promise<void> {
  const cluster = await startKubeTestCluster({ bookmarkIntervalMs: 60_000 });
  loadScale(cluster.fake.store, SHAPE);
  cluster.fake.warmSerializationCache();
  cluster.fake.store.historyLimit = 20_000;
  const control = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname === '/cpu') {
      // This process's CPU so far: the API server's share of the two cores while weft starts.
      const c = process.cpuUsage();
      res.end(JSON.stringify({ cpuMs: (c.user + c.system) / 1000 }));
      return;
    }
    if (url.pathname === '/touch-service') {
      // A Service change: weft derives the snapshot for it (before, a full rebuild).
      const svc = scaleService(SHAPE, 0);
      const at = wallUs();
      cluster.fake.store.update('services', { ...svc, metadata: { ...svc.metadata, annotations: { 'weft.dev/bench-t': String(at) } } });
      res.end(JSON.stringify({ at }));
      return;
    }
    const rate = Number(url.searchParams.get('rate') ?? 100);
    const total = rate * Number(url.searchParams.get('seconds') ?? 10);
    let n = 0;
    const started = performance.now();
    const tick = (): void => {
      const due = Math.min(total, Math.floor(((performance.now() - started) / 1000) * rate));
      for (; n < due; n++) cluster.fake.store.update('pods', scalePod(SHAPE, (n * 7919) % SHAPE.pods, { 'bench-t': String(wallUs()) }));
      if (n < total) setTimeout(tick, 2);
      else res.end(JSON.stringify({ changes: n }));
    };
    tick();
  });
  await new Promise<void>((r) => control.listen(0, '127.0.0.1', r));
  process.stdout.write(JSON.stringify({ env: cluster.env, serviceAccountDir: cluster.serviceAccountDir, control: (control.address() as net.AddressInfo).port }) + '\n');
}

function post(port: number, path: string, method = 'POST'): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    http.request({ host: '127.0.0.1', port, method, path }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve(body));
    }).on('error', reject).end();
  });
}

type FakeInfo = { env: Record<string, string>; serviceAccountDir: string; control: number };

/** A file-configured weft holding the same model: the baseline for heap. */
async function fileMode(): Promise<Record<string, number>> {
  const heap0 = heapAfterGc();
  let config: WeftConfig;
  {
    const model = new KubeMeshModel({ trustDomain: 'cluster.local' });
    for (let i = 0; i < SHAPE.namespaces; i++) model.upsert('namespaces', `ns-${i}`, stripNamespace({ metadata: { name: `ns-${i}`, resourceVersion: '1', labels: i % 2 === 0 ? { 'istio.io/dataplane-mode': 'ambient' } : {} } }));
    for (let i = 0; i < SHAPE.services; i++) { const s = stripService({ ...scaleService(SHAPE, i), metadata: { ...scaleService(SHAPE, i).metadata, resourceVersion: '1' } }); model.upsert('services', `${s.namespace}/${s.name}`, s); }
    for (let n = 0; n < SHAPE.pods; n++) { const raw = scalePod(SHAPE, n); const p = stripPod({ ...raw, metadata: { ...raw.metadata, resourceVersion: '1' } }); model.upsert('pods', `${p.namespace}/${p.name}`, p); }
    const mesh = model.build();
    // Through JSON, so the file's model shares nothing with the generator's objects.
    config = configSchema.parse(JSON.parse(JSON.stringify({ ...base(), source: 'file', namespaces: mesh.namespaces, workloads: mesh.workloads, services: mesh.services })));
  }
  const app = await createApp(config);
  const heap = heapAfterGc();
  await app.shutdown(0);
  return { heapEmptyMb: heap0 / MB, heapFileMb: heap / MB, workloads: config.workloads.length, services: config.services.length };
}

async function kubeMode(fake: FakeInfo): Promise<Record<string, number>> {
  const heap0 = heapAfterGc();
  const fakeCpu = async (): Promise<number> => (JSON.parse(await post(fake.control, '/cpu', 'GET')) as { cpuMs: number }).cpuMs;
  const fakeCpu0 = await fakeCpu();
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  const main0 = process.threadCpuUsage();
  const app = await createApp(base());
  const applied: number[] = [];
  /** When each snapshot that changed Services served (rebuilt, or derived with a Service change). */
  const serviceApplies: number[] = [];
  /** How long deriving each snapshot with a Service change took (weft's own share of a Service change). */
  const servicePatchMs: number[] = [];
  const seen = new Map<string, string>();
  // Pods an earlier run churned carry its stamps (WEFT_BENCH_K8S_FORMATS runs several against one fake): only this run's count.
  let churnFrom = Infinity;
  const observe = (workloads: readonly WorkloadConfig[]): void => {
    const now = wallUs();
    for (const w of workloads) {
      const t = w.labels['bench-t'];
      if (t === undefined || Number(t) < churnFrom || seen.get(w.name) === t) continue;
      seen.set(w.name, t);
      applied.push((now - Number(t)) / 1000);
    }
  };
  const source = new KubernetesSource({
    base: base(),
    connection: inClusterConnection(fake.env, fake.serviceAccountDir),
    metrics: app.metrics,
    recordEvents: false,
    protobuf: process.env.WEFT_BENCH_K8S_FORMAT !== 'json',
    target: {
      state: app.state,
      recordRejectedReload: () => app.recordRejectedReload(),
      reload: async (c) => {
        const r = await app.reload(c);
        observe(c.workloads);
        serviceApplies.push(wallUs());
        return r;
      },
      patchWorkloads: (change) => {
        const started = performance.now();
        const r = app.patchWorkloads(change);
        if ((change.services?.upsert.length ?? 0) + (change.services?.remove.length ?? 0) > 0) {
          serviceApplies.push(wallUs());
          servicePatchMs.push(performance.now() - started);
        }
        observe(change.upsert);
        return r;
      },
    },
  });
  app.addReadinessGate(() => source.synced);
  source.start();
  await source.whenSynced();
  const readyMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  const main = process.threadCpuUsage(main0);
  const readyCpuMs = (cpu.user + cpu.system) / 1000;
  const readyMainThreadCpuMs = (main.user + main.system) / 1000;
  const readyFakeCpuMs = (await fakeCpu()) - fakeCpu0;
  const workloads = app.state.current.workloads.length;
  const heap = heapAfterGc();
  churnFrom = wallUs();
  const churn = await post(fake.control, '/churn?rate=100&seconds=20');
  await new Promise((r) => setTimeout(r, 500));
  const hist = (await app.metrics.registry.getSingleMetric('weft_k8s_event_to_snapshot_seconds')?.get())?.values ?? [];
  const count = hist.find((v) => (v as { metricName?: string }).metricName?.endsWith('_count') === true)?.value ?? 0;
  // weft's own share: from an event's arrival to its snapshot, per applied batch (a bucket's upper bound, so coarse).
  const buckets = hist.filter((v) => (v as { metricName?: string }).metricName?.endsWith('_bucket') === true).map((v) => ({ le: Number(v.labels.le), n: v.value }));
  const bucketQuantile = (q: number): number => (buckets.find((b) => b.n >= q * count)?.le ?? NaN) * 1000;
  const serviceMs: number[] = [];
  for (let i = 0; i < 5; i++) {
    const { at } = JSON.parse(await post(fake.control, '/touch-service')) as { at: number };
    while (!serviceApplies.some((t) => t > at)) await new Promise((r) => setTimeout(r, 1));
    serviceMs.push(((serviceApplies.find((t) => t > at) ?? at) - at) / 1000);
    await new Promise((r) => setTimeout(r, 500));
  }
  await source.stop();
  await app.shutdown(0);
  return {
    readyMs,
    readyCpuMs,
    readyMainThreadCpuMs,
    readyFakeCpuMs,
    // What the start would take with the two cores to itself: the busiest thread, or all the CPU spread over both cores.
    readyCpuBoundMs: Math.max(readyMainThreadCpuMs, (readyCpuMs + readyFakeCpuMs) / 2),
    workloads,
    heapEmptyMb: heap0 / MB,
    heapKubeMb: heap / MB,
    churnChanges: (JSON.parse(churn) as { changes: number }).changes,
    writeToSnapshotP50Ms: percentile(applied, 0.5),
    writeToSnapshotP99Ms: percentile(applied, 0.99),
    writeToSnapshotMaxMs: Math.max(...applied),
    snapshots: count,
    arrivalToSnapshotP50MsAtMost: bucketQuantile(0.5),
    arrivalToSnapshotP99MsAtMost: bucketQuantile(0.99),
    serviceChangeP50Ms: percentile(serviceMs, 0.5),
    serviceChangeMaxMs: Math.max(...serviceMs),
    servicePatchP50Ms: percentile(servicePatchMs, 0.5),
  };
}

/** 10,000 watch reconnects against a small resource: descriptors and heap before, midway and after. */
async function soakMode(): Promise<Record<string, number>> {
  const cluster = await startKubeTestCluster();
  for (let i = 0; i < 100; i++) cluster.fake.store.create('namespaces', { metadata: { name: `ns-${i}` } });
  const client = new KubeClient(inClusterConnection(cluster.env, cluster.serviceAccountDir));
  const r = new KubeReflector<Stripped>({ client, resource: WATCHED_RESOURCES.find((x) => x.resource === 'namespaces')!, strip: stripNamespace, metrics: new KubeMetrics(new MetricsRegistry()), handler: { upsert: () => undefined, remove: () => undefined, synced: () => undefined }, tuning: { backoffInitialMs: 0, backoffMaxMs: 0 } });
  const abort = new AbortController();
  const run = r.run(abort.signal);
  const fds = (): number => readdirSync('/proc/self/fd').length;
  const out: Record<string, number> = {};
  let reconnects = 0;
  for (const mark of [0, 1000, 5000, 10_000]) {
    while (reconnects < mark) {
      while (cluster.fake.openWatches === 0) await new Promise((res) => setImmediate(res));
      cluster.fake.dropConnections();
      reconnects++;
      while (cluster.fake.openWatches !== 0) await new Promise((res) => setImmediate(res));
      cluster.fake.requests.length = 0;
    }
    out[`fds@${mark}`] = fds();
    out[`heapMb@${mark}`] = heapAfterGc() / MB;
  }
  abort.abort();
  await run;
  await client.close();
  await cluster.close();
  return out;
}

function child(args: string[], env: Record<string, string> = {}): Promise<Record<string, number>> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--expose-gc', '--max-old-space-size=4096', SELF, ...args], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ...env } });
    let out = '';
    p.stdout.on('data', (c: Buffer) => (out += c.toString()));
    p.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out.trim().split('\n').at(-1) ?? '{}') as Record<string, number>) : reject(new Error(`${args.join(' ')} exited ${code}`))));
  });
}

async function main(): Promise<void> {
  setLogLevel(process.env.WEFT_LOG_LEVEL === 'info' ? 'info' : 'error');
  const [mode, arg] = process.argv.slice(2);
  if (mode === 'fake') return fakeProcess();
  if (mode === 'file') return void process.stdout.write(JSON.stringify(await fileMode()) + '\n');
  if (mode === 'kube') return void process.stdout.write(JSON.stringify(await kubeMode(JSON.parse(arg ?? '{}') as FakeInfo)) + '\n');
  if (mode === 'soak') return void process.stdout.write(JSON.stringify(await soakMode()) + '\n');
  const fake = spawn(process.execPath, ['--max-old-space-size=4096', SELF, 'fake'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const info = await new Promise<string>((resolve) => createInterface({ input: fake.stdout }).once('line', resolve));
  const only = process.env.WEFT_BENCH_K8S_ONLY === 'kube';
  try {
    const file = only ? undefined : await child(['file']);
    const byFormat: Record<string, Record<string, number>> = {};
    for (const [i, format] of (process.env.WEFT_BENCH_K8S_FORMATS ?? 'protobuf').split(',').entries()) byFormat[byFormat[format] === undefined ? format : `${format}#${i}`] = await child(['kube', info], { WEFT_BENCH_K8S_FORMAT: format });
    const kube = Object.values(byFormat)[0] ?? {};
    const soak = only ? undefined : await child(['soak']);
    process.stdout.write(JSON.stringify({ file, kube: byFormat, soak, heapGrowthVsFileMb: file === undefined ? undefined : kube.heapKubeMb! - file.heapFileMb! }, null, 2) + '\n');
  } finally {
    fake.kill();
  }
}

await main();
