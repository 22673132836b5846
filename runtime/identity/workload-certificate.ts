/** The certificate material of one workload identity, as every CA client returns it and the TLS layers consume it. */
import type { X509Certificate } from 'node:crypto';

export interface WorkloadCertificate {
  /** SPIFFE ID the leaf carries. */
  identity: string;
  /** PKCS#8 PEM of the leaf's private key; never leaves the node. */
  privateKeyPem: string;
  /** Leaf first, then intermediates (no root), as PEM. */
  certChainPem: string[];
  /** Trust anchors for peers of this identity (the mesh roots). */
  rootsPem: string[];
  leaf: X509Certificate;
  notBefore: Date;
  notAfter: Date;
}

/** A source of workload certificates: the built-in CA, or an external one such as istiod's IstioCertificateService. */
export interface CaClient {
  /** Issues a fresh key and certificate for `identity`, valid for about `ttlSeconds`. */
  fetchCertificate(identity: string, ttlSeconds: number): Promise<WorkloadCertificate>;
  close?(): void;
}
