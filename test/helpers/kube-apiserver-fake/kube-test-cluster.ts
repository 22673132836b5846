// A fake API server over TLS with a service-account directory (token, ca.crt) laid out as the kubelet mounts it, for in-cluster loading.
import { mkdtempSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KubeApiServerFake, type KubeApiServerFakeOptions } from './kube-apiserver-fake.js';
import { createTestPki, type TestPki } from './test-pki.js';

export interface KubeTestCluster {
  fake: KubeApiServerFake;
  pki: TestPki;
  /** A directory with `token` and `ca.crt`, as /var/run/secrets/kubernetes.io/serviceaccount. */
  serviceAccountDir: string;
  env: Record<string, string>;
  /** Writes a new token (atomically, as the kubelet does) and makes the server accept only it. */
  rotateToken(): string;
  close(): Promise<void>;
}

let pkiCache: TestPki | undefined;

export async function startKubeTestCluster(opts: Omit<KubeApiServerFakeOptions, 'tls' | 'tokens'> = {}): Promise<KubeTestCluster> {
  pkiCache ??= createTestPki();
  const pki = pkiCache;
  const dir = mkdtempSync(join(tmpdir(), 'weft-sa-'));
  let n = 0;
  const writeToken = (): string => {
    const token = `token-${++n}-${Math.random().toString(36).slice(2)}`;
    writeFileSync(join(dir, 'token.tmp'), token + '\n');
    renameSync(join(dir, 'token.tmp'), join(dir, 'token'));
    return token;
  };
  writeFileSync(join(dir, 'ca.crt'), pki.ca);
  const fake = await new KubeApiServerFake({ ...opts, tls: { cert: pki.serverCert, key: pki.serverKey, clientCa: pki.ca }, tokens: [writeToken()] }).start();
  const host = opts.host ?? '127.0.0.1';
  return {
    fake,
    pki,
    serviceAccountDir: dir,
    env: { KUBERNETES_SERVICE_HOST: host, KUBERNETES_SERVICE_PORT: String(fake.port) },
    rotateToken: () => {
      const token = writeToken();
      fake.setTokens([token]);
      return token;
    },
    close: () => fake.close(),
  };
}
