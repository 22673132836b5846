/** TLS settings of HBONE as ztunnel sets them (TLS 1.3 only, AES-GCM suites, ALPN h2, no SNI, peers verified by SPIFFE identity instead of hostname), plus TLS 1.3 session tickets between weft nodes. */
import type { X509Certificate } from 'node:crypto';
import type tls from 'node:tls';
import { identityOfCertificate, parseSpiffeId, uriSans } from '../identity/spiffe-id.js';
import type { WorkloadCertificate } from '../identity/workload-certificate.js';

/** ztunnel allows exactly these two; AES-128 first because it is the cheaper of the two on every CPU with AES-NI. */
export const HBONE_CIPHERSUITES = 'TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384';
export const HBONE_ALPN = ['h2'];

const contexts = new WeakMap<WorkloadCertificate, tls.SecureContext>();

/** TLS options for one certificate (tls.Server takes options, not a SecureContext). */
export function tlsOptionsFor(cert: WorkloadCertificate): tls.SecureContextOptions {
  // `ciphersuites` (TLS 1.3 suites) exists since Node 12.11 but is missing from @types/node 20's SecureContextOptions.
  const options: tls.SecureContextOptions & { ciphersuites: string } = {
    key: cert.privateKeyPem,
    cert: cert.certChainPem.join(''),
    ca: cert.rootsPem,
    minVersion: 'TLSv1.3',
    maxVersion: 'TLSv1.3',
    ciphersuites: HBONE_CIPHERSUITES,
    // Servers issue stateless TLS 1.3 tickets (keys random per tls.Server, renewed on rotation). ztunnel's client never
    // offers one, so it does a full handshake as before; weft's client resumes (hbone-client.ts, tls-session-cache.ts).
  };
  return options;
}

/** One SecureContext per issued certificate, shared by every connection of that identity until rotation replaces it. */
export function secureContextFor(cert: WorkloadCertificate): tls.SecureContext {
  let ctx = contexts.get(cert);
  if (ctx === undefined) {
    ctx = process.getBuiltinModule('node:tls').createSecureContext(tlsOptionsFor(cert));
    contexts.set(cert, ctx);
  }
  return ctx;
}

/** The SPIFFE identity a verified peer certificate carries (first SPIFFE URI SAN), if any. */
const peerCerts = new WeakMap<tls.TLSSocket, X509Certificate | undefined>();

/** The peer's leaf, read once: Node 20's getPeerX509Certificate() answers only its first call on a socket. */
export function peerCertificate(socket: tls.TLSSocket): X509Certificate | undefined {
  if (peerCerts.has(socket)) return peerCerts.get(socket);
  const cert = socket.getPeerX509Certificate();
  peerCerts.set(socket, cert);
  return cert;
}

export function peerIdentity(socket: tls.TLSSocket): string | undefined {
  const cert = peerCertificate(socket);
  return cert === undefined ? undefined : identityOfCertificate(cert);
}

/** ztunnel's TrustDomainVerifier: at least one URI SAN in the local trust domain. */
export function hasTrustDomain(cert: X509Certificate, trustDomain: string): boolean {
  return uriSans(cert).some((uri) => parseSpiffeId(uri)?.trustDomain === trustDomain);
}

/** True once the certificate's notAfter has passed (a resumed session does not re-run chain validation). */
export function isExpired(cert: X509Certificate, now = Date.now()): boolean {
  return Date.parse(cert.validTo) <= now;
}

/** ztunnel's IdentityVerifier: the server's URI SANs must contain one of the expected identities. */
export function matchesExpectedSans(cert: X509Certificate, expected: readonly string[]): boolean {
  const sans = uriSans(cert);
  return expected.some((id) => sans.includes(id));
}
