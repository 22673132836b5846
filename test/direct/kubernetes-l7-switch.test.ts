// End to end in process: Kubernetes objects move a destination between L4 and L7 (pod annotation, WasmPlugin selector, AuthorizationPolicy) with no failed request; the built-in CA's node check.
import http from 'node:http';
import type net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixture, wasmFileUrl } from '../helpers/wasm-fixtures.js';
import { startWeft, type WeftUnderTest } from '../helpers/weft-harness.js';
import { startKubeTestCluster, type KubeTestCluster } from '../helpers/kube-apiserver-fake/kube-test-cluster.js';
import { attachKubernetesSource } from '../../runtime/kubernetes/attach-kubernetes-source.js';
import { inClusterConnection } from '../../runtime/kubernetes/kube-config.js';
import type { KubernetesSource } from '../../runtime/kubernetes/kubernetes-source.js';
import type { KubeObject } from '../helpers/kube-apiserver-fake/fake-resource-store.js';
import { CertificateAuthority, createBuiltinCaClient } from '../../runtime/identity/certificate-authority.js';
import { nodeCheckedCaClient } from '../../runtime/identity/node-checked-ca-client.js';

let cluster: KubeTestCluster;
let upstream: http.Server;
let w: WeftUnderTest;
let source: KubernetesSource;
let port: number;
let pluginUrl: string;
let readinessPort: number;

function request(method = 'GET'): Promise<{ status: number; servedBy: string | undefined; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: '/', method, agent: false }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, servedBy: res.headers['x-served-by'] as string | undefined, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** GETs from 6 clients in a loop until stopped; every answer must be a 200 from the upstream. */
function load() {
  let stop = false;
  const seen = { l4: 0, l7: 0 };
  const failures: string[] = [];
  const workers = Array.from({ length: 6 }, async () => {
    while (!stop) {
      try {
        const r = await request();
        if (r.status !== 200) failures.push(`status ${r.status}`);
        else if (r.servedBy === 'weft-wasm' && r.body === 'on') seen.l7++;
        else if (r.servedBy === undefined && r.body === 'none') seen.l4++;
        else failures.push(JSON.stringify(r));
      } catch (err) {
        failures.push((err as Error).message);
      }
    }
  });
  return {
    seen,
    failures,
    stop: async () => {
      stop = true;
      await Promise.all(workers);
    },
  };
}

async function eventually(check: () => Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 300; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out waiting for ${what}`);
}

const l7 = async () => (await request()).servedBy === 'weft-wasm';
const l4 = async () => (await request()).servedBy === undefined;

function pod(annotations: Record<string, string>): KubeObject {
  return { metadata: { name: 'web-1', namespace: 'shop', labels: { app: 'web' }, annotations }, spec: { nodeName: 'node-a', serviceAccountName: 'web' }, status: { phase: 'Running', podIP: '127.0.0.2', conditions: [{ type: 'Ready', status: 'True' }] } };
}

beforeAll(async () => {
  upstream = http.createServer((req, res) => res.end(String(req.headers['x-wasm-filter'] ?? 'none')));
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.2', r));
  const upstreamPort = (upstream.address() as net.AddressInfo).port;
  pluginUrl = await wasmFileUrl(await fixture('add-header'));
  cluster = await startKubeTestCluster();
  cluster.fake.installCrd('wasmplugins');
  cluster.fake.installCrd('authorizationpolicies');
  const s = cluster.fake.store;
  s.create('namespaces', { metadata: { name: 'shop' } });
  s.create('pods', pod({}));
  s.create('pods', { metadata: { name: 'other-1', namespace: 'shop', labels: { app: 'other' } }, spec: { nodeName: 'node-b', serviceAccountName: 'other' }, status: { phase: 'Running', podIP: '10.1.0.7' } });
  s.create('services', { metadata: { name: 'web', namespace: 'shop' }, spec: { clusterIP: '10.96.0.30', selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: upstreamPort }] } });
  s.create('wasmplugins', { metadata: { name: 'add-header', namespace: 'shop' }, spec: { url: pluginUrl } });
  w = await startWeft({ node: 'node-a', source: 'kubernetes', localPorts: [{ listen: '127.0.0.1:0', service: 'web.shop', port: 80 }] });
  port = Object.values(w.app.ports.localPorts)[0] as number;
  readinessPort = w.app.ports.readiness as number;
  const lines: string[] = [];
  source = attachKubernetesSource(w.app, w.app.state.current.config, { connection: inClusterConnection(cluster.env, cluster.serviceAccountDir), coalesceMs: 20, print: (l) => lines.push(l) });
  // Not ready until every resource has been listed once.
  expect(w.app.ready).toBe(false);
  expect(lines[0]).toMatch(/^kubernetes source: https:\/\/127\.0\.0\.1:\d+ \(in-cluster\), node node-a$/);
  expect(lines).toContain('  watching pods/v1 in all namespaces');
  expect(lines).toContain('  watching wasmplugins.extensions.istio.io/v1alpha1 (if the CRD is installed) in all namespaces');
  await source.whenSynced();
});

afterAll(async () => {
  await source.stop();
  await w.close();
  await cluster.close();
  await new Promise((r) => upstream.close(r));
});

describe('Kubernetes objects switch L4 and L7 under load', () => {
  it('is ready after the first sync and stays ready while the API server is down', async () => {
    expect((await fetch(`http://127.0.0.1:${readinessPort}/healthz/ready`)).status).toBe(200);
    expect(await request()).toEqual({ status: 200, servedBy: undefined, body: 'none' });
  });

  it('a pod annotation attaches the WasmPlugin of that name, and removing it drops back to L4', async () => {
    const traffic = load();
    cluster.fake.store.update('pods', pod({ 'weft.dev/plugins': 'add-header' }));
    await eventually(l7, 'L7 after the annotation');
    await new Promise((r) => setTimeout(r, 100));
    cluster.fake.store.update('pods', pod({}));
    await eventually(l4, 'L4 after removing it');
    await new Promise((r) => setTimeout(r, 100));
    await traffic.stop();
    expect(traffic.failures).toEqual([]);
    expect(traffic.seen.l7).toBeGreaterThan(0);
    expect(traffic.seen.l4).toBeGreaterThan(0);
  });

  it('a WasmPlugin with a selector attaches itself; deleting it drops back to L4', async () => {
    const traffic = load();
    cluster.fake.store.create('wasmplugins', { metadata: { name: 'by-selector', namespace: 'shop' }, spec: { url: pluginUrl, selector: { matchLabels: { app: 'web' } } } });
    await eventually(l7, 'L7 from the selector');
    await new Promise((r) => setTimeout(r, 100));
    cluster.fake.store.delete('wasmplugins', 'shop', 'by-selector');
    await eventually(l4, 'L4 after deleting it');
    await traffic.stop();
    expect(traffic.failures).toEqual([]);
    expect(traffic.seen.l7).toBeGreaterThan(0);
  });

  it('an AuthorizationPolicy with L7 rules is enforced at L7 and lifted when deleted', async () => {
    const traffic = load();
    cluster.fake.store.create('authorizationpolicies', { metadata: { name: 'get-only', namespace: 'shop' }, spec: { selector: { matchLabels: { app: 'web' } }, rules: [{ to: [{ operation: { methods: ['GET'] } }] }] } });
    await eventually(async () => (await request('POST')).status === 403, 'POST denied at L7');
    expect((await request('POST')).body).toBe('RBAC: access denied\n');
    cluster.fake.store.delete('authorizationpolicies', 'shop', 'get-only');
    await eventually(async () => (await request('POST')).status === 200, 'POST allowed again');
    await traffic.stop();
    expect(traffic.failures).toEqual([]);
  });

  it('keeps serving the last snapshot and stays ready while the API server refuses everything', async () => {
    cluster.fake.inject({ fault: { kind: 'status', code: 500 }, times: 1_000_000 });
    cluster.fake.dropConnections();
    await eventually(async () => /weft_k8s_errors_total\{resource="pods",reason="server"\} [1-9]/.test(await w.metrics()), 'the failures to be counted');
    expect((await fetch(`http://127.0.0.1:${readinessPort}/healthz/ready`)).status).toBe(200);
    expect((await request()).status).toBe(200);
    const dump = (await (await fetch(`http://127.0.0.1:${w.app.ports.admin}/config_dump`)).json()) as { kubernetes: { origins: { workloads: Record<string, unknown> } } };
    expect(dump.kubernetes.origins.workloads['shop/web-1']).toMatchObject({ source: 'kubernetes', kind: 'Pod', name: 'web-1' });
    expect(await w.metrics()).toMatch(/weft_k8s_synced\{resource="pods"\} 1/);
  });
});

describe('built-in CA node check', () => {
  it('issues certificates only for service accounts with a pod on this node', async () => {
    // The node's own certificate manager obtains its pods' identities through the node-checked CA.
    const mine = await w.app.hbone.certificates.fetch('spiffe://cluster.local/ns/shop/sa/web');
    expect(mine.identity).toBe('spiffe://cluster.local/ns/shop/sa/web');
    // The CA itself refuses, whoever asks: other-1 runs as shop/other on node-b, so node-a may not mint that identity.
    const hosts = (id: string): boolean => w.app.state.current.localWorkloads().some((x) => x.identity === id);
    const ca = nodeCheckedCaClient(createBuiltinCaClient(CertificateAuthority.generate('cluster.local')), 'node-a', hosts);
    expect((await ca.fetchCertificate('spiffe://cluster.local/ns/shop/sa/web', 3600)).identity).toBe('spiffe://cluster.local/ns/shop/sa/web');
    await expect(ca.fetchCertificate('spiffe://cluster.local/ns/shop/sa/other', 3600)).rejects.toThrow(/node node-a may not obtain a certificate for spiffe:\/\/cluster.local\/ns\/shop\/sa\/other/);
    await expect(ca.fetchCertificate('spiffe://cluster.local/ns/kube-system/sa/admin', 3600)).rejects.toThrow(/no pod with that service account runs on this node/);
    // When the pod moves away, so does the right to its identity.
    cluster.fake.injectClear();
    cluster.fake.store.update('pods', { ...pod({}), spec: { nodeName: 'node-c', serviceAccountName: 'web' } });
    await eventually(() => Promise.resolve(!hosts('spiffe://cluster.local/ns/shop/sa/web')), 'the pod to leave this node');
    await expect(ca.fetchCertificate('spiffe://cluster.local/ns/shop/sa/web', 3600)).rejects.toThrow(/may not obtain/);
  });
});
