import { describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createPrivateKey, generateKeyPairSync, X509Certificate } from 'node:crypto';
import { CertificateAuthority, ROOT_CERT_FILE, ROOT_KEY_FILE } from './certificate-authority.js';
import { identityOfCertificate, parseSpiffeId, principalOf } from './spiffe-id.js';
import { createCsrPem, parseCsrPem } from './x509-encode.js';
import { isCausedBy } from '../errors.js';

const ID = 'spiffe://cluster.local/ns/default/sa/sleep';

describe('CertificateAuthority', () => {
  it('issues a P-256 leaf with the SPIFFE URI SAN, signed by the root, with the requested TTL', () => {
    const ca = CertificateAuthority.generate('cluster.local');
    const cert = ca.issueWorkload(ID, { ttlSeconds: 86_400 });
    expect(identityOfCertificate(cert.leaf)).toBe(ID);
    expect(cert.leaf.checkIssued(ca.rootCert)).toBe(true);
    expect(cert.leaf.verify(ca.rootCert.publicKey)).toBe(true);
    expect(cert.leaf.ca).toBe(false);
    expect(cert.leaf.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    expect(cert.leaf.checkPrivateKey(createPrivateKey(cert.privateKeyPem))).toBe(true);
    const ttl = (cert.notAfter.getTime() - Date.now()) / 1000;
    expect(ttl).toBeGreaterThan(86_400 - 5);
    expect(ttl).toBeLessThanOrEqual(86_400);
  });

  it('refuses identities outside its trust domain and non-SPIFFE names', () => {
    const ca = CertificateAuthority.generate('cluster.local');
    expect(() => ca.issueWorkload('spiffe://other.domain/ns/a/sa/b', { ttlSeconds: 60 })).toThrow(/outside the CA's trust domain/);
    expect(() => ca.issueWorkload('https://example.com', { ttlSeconds: 60 })).toThrow(/not a SPIFFE ID/);
  });

  it('generates the root into caDir once; a second load reads the same root', () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'weft-ca-')), 'ca');
    const first = CertificateAuthority.load({ trustDomain: 'cluster.local', caDir: dir });
    const second = CertificateAuthority.load({ trustDomain: 'cluster.local', caDir: dir });
    expect(second.rootPem).toBe(first.rootPem);
    expect(statSync(join(dir, ROOT_KEY_FILE)).mode & 0o777).toBe(0o600);
    const leaf = second.issueWorkload(ID, { ttlSeconds: 60 }).leaf;
    expect(leaf.verify(first.rootCert.publicKey)).toBe(true);
  });

  it('loads a root from explicit files and rejects a mismatched key with a clear error', () => {
    const dir = mkdtempSync(join(tmpdir(), 'weft-ca-'));
    CertificateAuthority.load({ trustDomain: 'cluster.local', caDir: dir });
    const loaded = CertificateAuthority.load({ trustDomain: 'cluster.local', rootCertFile: join(dir, ROOT_CERT_FILE), rootKeyFile: join(dir, ROOT_KEY_FILE) });
    expect(loaded.rootPem).toBe(readFileSync(join(dir, ROOT_CERT_FILE), 'utf8'));
    const otherKey = join(dir, 'other-key.pem');
    writeFileSync(otherKey, generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'pem', type: 'pkcs8' }));
    let err: unknown;
    try {
      CertificateAuthority.load({ trustDomain: 'cluster.local', rootCertFile: join(dir, ROOT_CERT_FILE), rootKeyFile: otherKey });
    } catch (e) {
      err = e;
    }
    expect(isCausedBy(err, 'WEFT_ERR_IDENTITY')).toBe(true);
    expect(String(err)).toMatch(/does not match/);
    expect(() => CertificateAuthority.load({ trustDomain: 'cluster.local', rootCertFile: join(dir, 'missing.pem'), rootKeyFile: otherKey })).toThrow(/cannot read/);
  });

  it('signs a CSR only for the identity it carries (leaf first, root last)', () => {
    const ca = CertificateAuthority.generate('cluster.local');
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const csr = createCsrPem(privateKey, ID);
    expect(parseCsrPem(csr).uriSans).toEqual([ID]);
    const chain = ca.signCsr(csr, ID, 3600);
    expect(chain).toHaveLength(2);
    expect(chain[1]).toBe(ca.rootPem);
    const leaf = new X509Certificate(chain[0] ?? '');
    expect(leaf.checkPrivateKey(privateKey)).toBe(true);
    expect(() => ca.signCsr(csr, 'spiffe://cluster.local/ns/default/sa/other', 3600)).toThrow(/do not include/);
    const der = Buffer.from(csr.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
    der[der.indexOf('sleep') + 2] = 'a'.charCodeAt(0); // sleep -> sleap inside the signed SAN
    const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
    expect(() => parseCsrPem(tampered)).toThrow(/invalid certificate signing request/);
  });
});

describe('spiffe ids', () => {
  it('parses and strips the scheme for policy principals', () => {
    expect(parseSpiffeId(ID)).toEqual({ trustDomain: 'cluster.local', namespace: 'default', serviceAccount: 'sleep' });
    expect(parseSpiffeId('spiffe://cluster.local/ns/default')).toBeUndefined();
    expect(principalOf(ID)).toBe('cluster.local/ns/default/sa/sleep');
  });
});
