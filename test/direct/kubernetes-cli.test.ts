// `weft run --config` with `source: kubernetes` outside a cluster (KUBECONFIG, NODE_NAME): prints what it watches, becomes ready after the first sync, dumps origins, drains on SIGTERM.
import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { freePort } from '../helpers/free-port.js';
import { startKubeTestCluster, type KubeTestCluster } from '../helpers/kube-apiserver-fake/kube-test-cluster.js';

let cluster: KubeTestCluster;

beforeAll(async () => {
  cluster = await startKubeTestCluster();
  cluster.fake.store.create('namespaces', { metadata: { name: 'shop', labels: { 'istio.io/dataplane-mode': 'ambient' } } });
  cluster.fake.store.create('pods', { metadata: { name: 'web-1', namespace: 'shop', labels: { app: 'web' } }, spec: { nodeName: 'node-a', serviceAccountName: 'web' }, status: { phase: 'Running', podIP: '10.1.0.1' } });
});

afterAll(async () => {
  await cluster.close();
});

describe('weft run with source: kubernetes', () => {
  it('prints the watched resources, gets ready after the first sync, and shows origins in config_dump', async () => {
    const dir = cluster.serviceAccountDir;
    const kubeconfig = path.join(dir, 'kubeconfig');
    await writeFile(kubeconfig, stringify({
      apiVersion: 'v1', kind: 'Config', 'current-context': 'test',
      contexts: [{ name: 'test', context: { cluster: 'fake', user: 'weft' } }],
      clusters: [{ name: 'fake', cluster: { server: cluster.fake.url, 'certificate-authority': 'ca.crt' } }],
      users: [{ name: 'weft', user: { tokenFile: 'token' } }],
    }));
    const ports = { admin: await freePort(), metrics: await freePort(), readiness: await freePort() };
    const file = path.join(dir, 'weft.yaml');
    await writeFile(file, stringify({
      source: 'kubernetes',
      accessLog: { enabled: false },
      listeners: { outbound: { address: '127.0.0.1:0' }, inbound: { address: '127.0.0.1:0' }, explicitProxy: { address: '127.0.0.1:0' }, admin: `127.0.0.1:${ports.admin}`, metrics: `127.0.0.1:${ports.metrics}`, readiness: `127.0.0.1:${ports.readiness}` },
    }));
    const child = spawn(process.execPath, ['--import', 'tsx', 'runtime/cli.ts', 'run', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, KUBECONFIG: kubeconfig, NODE_NAME: 'node-a', WEFT_NODE_NAME: '' } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    try {
      await expect.poll(() => stdout, { timeout: 20_000 }).toContain('watching authorizationpolicies.security.istio.io/v1 (if the CRD is installed) in all namespaces');
      expect(stdout).toContain(`kubernetes source: ${cluster.fake.url} (kubeconfig ${kubeconfig} (context test)), node node-a`);
      expect(stdout).toContain('  watching pods/v1 in all namespaces');
      expect(stdout).toContain('  watching namespaces/v1\n');
      const ready = () => fetch(`http://127.0.0.1:${ports.readiness}/healthz/ready`).then((r) => r.status, () => 0);
      await expect.poll(ready, { timeout: 15_000 }).toBe(200);
      const dump = (await (await fetch(`http://127.0.0.1:${ports.admin}/config_dump`)).json()) as { node: string; workloads: { name: string; protocol: string; local: boolean }[]; kubernetes: { origins: { workloads: Record<string, unknown> } } };
      expect(dump.node).toBe('node-a');
      expect(dump.workloads).toMatchObject([{ name: 'web-1', protocol: 'HBONE', local: true }]);
      expect(dump.kubernetes.origins.workloads['shop/web-1']).toMatchObject({ source: 'kubernetes', kind: 'Pod', namespace: 'shop', name: 'web-1' });
      expect(stderr).toContain('"msg":"resource is not served by this cluster (CRD not installed); looking again every few minutes without logging"');
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
    } finally {
      child.kill('SIGKILL');
    }
  });
});
