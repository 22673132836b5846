/** The built-in CA: a P-256 root loaded from files or generated into a state directory, signing SPIFFE workload certificates. */
import { generateKeyPairSync, type KeyObject, type X509Certificate } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { WeftError } from '../errors.js';
import { createLogger } from '../log.js';
import { checkCaRoot, readCaRoot } from './ca-root.js';
import { parseSpiffeId } from './spiffe-id.js';
import { createCertificate, parseCsrPem } from './x509-encode.js';
import type { CaClient, WorkloadCertificate } from './workload-certificate.js';

const log = createLogger('identity');

/** Istio's self-signed root defaults to 10 years (CITADEL_SELF_SIGNED_CA_CERT_TTL). */
const ROOT_TTL_MS = 10 * 365 * 24 * 3600 * 1000;
/** Leaves start a little in the past so peers with a small clock skew accept them (Istio backdates by 2 minutes; short test TTLs by a tenth). */
const BACKDATE_MS = 2 * 60 * 1000;
export const ROOT_CERT_FILE = 'root-cert.pem';
export const ROOT_KEY_FILE = 'root-key.pem';

export interface CaSource {
  trustDomain: string;
  /** Directory holding root-cert.pem/root-key.pem; generated there when missing. */
  caDir?: string;
  rootCertFile?: string;
  rootKeyFile?: string;
}

export interface IssueOptions {
  ttlSeconds: number;
  /** Overrides for tests that need already-expired or not-yet-valid certificates. */
  notBefore?: Date;
  notAfter?: Date;
}

export class CertificateAuthority {
  readonly trustDomain: string;
  readonly rootCert: X509Certificate;
  readonly rootPem: string;
  readonly #rootKey: KeyObject;

  constructor(trustDomain: string, rootCert: X509Certificate, rootKey: KeyObject) {
    checkCaRoot(rootCert, rootKey);
    this.trustDomain = trustDomain;
    this.rootCert = rootCert;
    this.rootPem = rootCert.toString();
    this.#rootKey = rootKey;
  }

  /** The root as PEM, for the worker threads of this process to sign with the same root (runtime/workers). */
  exportRoot(): { certPem: string; keyPem: string } {
    return { certPem: this.rootPem, keyPem: this.#rootKey.export({ format: 'pem', type: 'pkcs8' }).toString() };
  }

  /** A fresh in-memory root (the embedded default, like ztunnel's FAKE_CA). */
  static generate(trustDomain: string): CertificateAuthority {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const now = Date.now();
    const cert = createCertificate({
      subjectKey: publicKey,
      issuerKey: privateKey,
      subjectOrganization: trustDomain,
      issuerOrganization: trustDomain,
      notBefore: new Date(now - BACKDATE_MS),
      notAfter: new Date(now + ROOT_TTL_MS),
      isCa: true,
    });
    return new CertificateAuthority(trustDomain, cert, privateKey);
  }

  /** Root from explicit files, else from `caDir` (generated and written there on first start), else in memory. */
  static load(source: CaSource): CertificateAuthority {
    if (source.rootCertFile !== undefined || source.rootKeyFile !== undefined) {
      if (source.rootCertFile === undefined || source.rootKeyFile === undefined) {
        throw new WeftError('WEFT_ERR_IDENTITY', 'identity.rootCertFile and identity.rootKeyFile must be given together');
      }
      return CertificateAuthority.fromFiles(source.trustDomain, source.rootCertFile, source.rootKeyFile);
    }
    if (source.caDir === undefined) return CertificateAuthority.generate(source.trustDomain);
    const certFile = join(source.caDir, ROOT_CERT_FILE);
    const keyFile = join(source.caDir, ROOT_KEY_FILE);
    try {
      return CertificateAuthority.fromFiles(source.trustDomain, certFile, keyFile);
    } catch (err) {
      if ((err as { cause?: { code?: string } }).cause?.code !== 'ENOENT') throw err;
    }
    const ca = CertificateAuthority.generate(source.trustDomain);
    mkdirSync(source.caDir, { recursive: true, mode: 0o700 });
    try {
      // 'wx': when two nodes of one test start together, the loser reads the winner's root.
      writeFileSync(keyFile, ca.#rootKey.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600, flag: 'wx' });
      writeFileSync(certFile, ca.rootPem, { mode: 0o644, flag: 'wx' });
    } catch (err) {
      if ((err as { code?: string }).code === 'EEXIST') return CertificateAuthority.fromFiles(source.trustDomain, certFile, keyFile);
      throw new WeftError('WEFT_ERR_IDENTITY', `cannot write the CA root into ${source.caDir}`, { cause: err });
    }
    log.info({ caDir: source.caDir, trustDomain: source.trustDomain }, 'generated CA root');
    return ca;
  }

  static fromFiles(trustDomain: string, certFile: string, keyFile: string): CertificateAuthority {
    const root = readCaRoot(certFile, keyFile);
    return new CertificateAuthority(trustDomain, root.cert, root.key);
  }

  /** Signs a leaf for `identity` over `subjectKey` (public or private key object). */
  issue(identity: string, subjectKey: KeyObject, options: IssueOptions): X509Certificate {
    const id = parseSpiffeId(identity);
    if (id === undefined) throw new WeftError('WEFT_ERR_IDENTITY', `"${identity}" is not a SPIFFE ID (spiffe://<td>/ns/<ns>/sa/<sa>)`);
    if (id.trustDomain !== this.trustDomain) {
      throw new WeftError('WEFT_ERR_IDENTITY', `identity ${identity} is outside the CA's trust domain ${this.trustDomain}`);
    }
    const now = Date.now();
    return createCertificate({
      subjectKey,
      issuerKey: this.#rootKey,
      issuerOrganization: this.trustDomain,
      notBefore: options.notBefore ?? new Date(now - Math.min(BACKDATE_MS, options.ttlSeconds * 100)),
      notAfter: options.notAfter ?? new Date(now + options.ttlSeconds * 1000),
      isCa: false,
      uriSans: [identity],
    });
  }

  /** IstioCertificateService semantics: sign a PEM CSR whose URI SAN must equal `identity`; returns leaf first, root last. */
  signCsr(csrPem: string, identity: string, ttlSeconds: number): string[] {
    const csr = parseCsrPem(csrPem);
    if (!csr.uriSans.includes(identity)) {
      throw new WeftError('WEFT_ERR_IDENTITY', `CSR SANs [${csr.uriSans.join(', ')}] do not include the requested identity ${identity}`);
    }
    return [this.issue(identity, csr.publicKey, { ttlSeconds }).toString(), this.rootPem];
  }

  /** A complete WorkloadCertificate with a new P-256 key (what the built-in CA client hands out). */
  issueWorkload(identity: string, options: IssueOptions): WorkloadCertificate {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const leaf = this.issue(identity, privateKey, options);
    return {
      identity,
      privateKeyPem: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
      certChainPem: [leaf.toString()],
      rootsPem: [this.rootPem],
      leaf,
      notBefore: new Date(leaf.validFrom),
      notAfter: new Date(leaf.validTo),
    };
  }
}

/** The built-in CA as a CaClient: the node signs its own workloads' certificates with the shared mesh root. */
export function createBuiltinCaClient(ca: CertificateAuthority): CaClient {
  return {
    fetchCertificate: (identity, ttlSeconds) => Promise.resolve().then(() => ca.issueWorkload(identity, { ttlSeconds })),
  };
}
