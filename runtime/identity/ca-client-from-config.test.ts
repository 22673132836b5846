import { describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { configSchema } from '../config/config-schema.js';
import { caClientFromConfig, useSharedCaRoot } from './ca-client-from-config.js';
import { CertificateAuthority } from './certificate-authority.js';
import { ROOT_CERT_FILE } from './certificate-authority.js';
import { identityOfCertificate } from './spiffe-id.js';

const ID = 'spiffe://cluster.local/ns/default/sa/sleep';
const config = (identity: Record<string, unknown>) => configSchema.parse({ node: 'n', identity });

describe('caClientFromConfig', () => {
  it('creates the built-in root only when the first certificate is needed', async () => {
    const caDir = join(mkdtempSync(join(tmpdir(), 'weft-lazy-ca-')), 'ca');
    const { caClient } = caClientFromConfig(config({ caDir }));
    expect(existsSync(join(caDir, ROOT_CERT_FILE))).toBe(false);
    const cert = await caClient.fetchCertificate(ID, 60);
    expect(identityOfCertificate(cert.leaf)).toBe(ID);
    expect(existsSync(join(caDir, ROOT_CERT_FILE))).toBe(true);
    // One root for the node's lifetime: later certificates chain to the same one.
    expect((await caClient.fetchCertificate(ID, 60)).rootsPem).toEqual(cert.rootsPem);
  });

  it('with a shared root (worker threads of one process), asks for it at the first certificate and every client chains to it', async () => {
    const root = CertificateAuthority.generate('cluster.local').exportRoot();
    let asked = 0;
    useSharedCaRoot(() => {
      asked++;
      return Promise.resolve(root);
    });
    try {
      const [a, b] = [caClientFromConfig(config({})).caClient, caClientFromConfig(config({})).caClient];
      expect(asked).toBe(0);
      const [ca, cb] = await Promise.all([a.fetchCertificate(ID, 60), b.fetchCertificate(ID, 60)]);
      expect(ca.rootsPem).toEqual([root.certPem]);
      expect(cb.rootsPem).toEqual([root.certPem]);
      // A configured caDir is the operator's choice and wins over the process's in-memory root.
      const caDir = join(mkdtempSync(join(tmpdir(), 'weft-shared-ca-')), 'ca');
      expect((await caClientFromConfig(config({ caDir })).caClient.fetchCertificate(ID, 60)).rootsPem).not.toEqual([root.certPem]);
    } finally {
      useSharedCaRoot(undefined);
    }
  });

  it('rejects a misconfigured root at start, not at the first certificate', () => {
    const dir = mkdtempSync(join(tmpdir(), 'weft-bad-root-'));
    expect(() => caClientFromConfig(config({ rootCertFile: join(dir, 'root-cert.pem') }))).toThrow(/must be given together/);
    expect(() => caClientFromConfig(config({ rootCertFile: join(dir, 'missing.pem'), rootKeyFile: join(dir, 'missing-key.pem') }))).toThrow(/cannot read the CA root/);
    writeFileSync(join(dir, 'junk.pem'), 'not a certificate');
    expect(() => caClientFromConfig(config({ rootCertFile: join(dir, 'junk.pem'), rootKeyFile: join(dir, 'junk.pem') }))).toThrow(/invalid CA root/);
  });

  it('retries a CA whose creation failed instead of keeping the failure', async () => {
    const parent = mkdtempSync(join(tmpdir(), 'weft-ca-retry-'));
    // A file where the CA directory should be: the first creation fails, removing it lets the next one succeed.
    const caDir = join(parent, 'ca');
    writeFileSync(caDir, 'in the way');
    const { caClient } = caClientFromConfig(config({ caDir }));
    await expect(caClient.fetchCertificate(ID, 60)).rejects.toThrow();
    rmSync(caDir);
    expect(identityOfCertificate((await caClient.fetchCertificate(ID, 60)).leaf)).toBe(ID);
  });
});
