/** SPIFFE identities as Istio uses them (`spiffe://<td>/ns/<ns>/sa/<sa>`): parse, format, and read the first one from a peer certificate. */
import type { X509Certificate } from 'node:crypto';

export interface SpiffeId {
  trustDomain: string;
  namespace: string;
  serviceAccount: string;
}

const SPIFFE_PATTERN = /^spiffe:\/\/([^/]+)\/ns\/([^/]+)\/sa\/([^/]+)$/;

export function parseSpiffeId(uri: string): SpiffeId | undefined {
  const m = SPIFFE_PATTERN.exec(uri);
  if (m === null) return undefined;
  return { trustDomain: m[1] ?? '', namespace: m[2] ?? '', serviceAccount: m[3] ?? '' };
}

export function formatSpiffeId(id: SpiffeId): string {
  return `spiffe://${id.trustDomain}/ns/${id.namespace}/sa/${id.serviceAccount}`;
}

/** The principal string Istio policies compare against: the SPIFFE ID without its scheme. */
export function principalOf(identity: string): string {
  return identity.startsWith('spiffe://') ? identity.slice('spiffe://'.length) : identity;
}

/** Read once per certificate object: every HBONE handshake asks two or three times (identity, trust domain, expected SANs). */
const sansOf = new WeakMap<X509Certificate, readonly string[]>();

/**
 * URI SANs of a certificate. Node renders subjectAltName as `URI:a, DNS:b`; values containing ", " are
 * JSON-quoted there, which a SPIFFE ID never needs, so a quoted entry is simply not a SPIFFE ID.
 */
export function uriSans(cert: X509Certificate): readonly string[] {
  const known = sansOf.get(cert);
  if (known !== undefined) return known;
  const text = cert.subjectAltName;
  const out: string[] = [];
  if (text !== undefined) for (const part of text.split(', ')) if (part.startsWith('URI:')) out.push(part.slice(4));
  sansOf.set(cert, out);
  return out;
}

/** ztunnel's `tls::identity`: the first URI SAN that parses as SPIFFE. */
export function identityOfCertificate(cert: X509Certificate): string | undefined {
  for (const uri of uriSans(cert)) if (parseSpiffeId(uri) !== undefined) return uri;
  return undefined;
}
