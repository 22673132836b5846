/** Peer certificates by their DER bytes: a node's peers present the same few leaves on every handshake, so each is parsed once (and its SANs read once, spiffe-id.ts), not once per connection. */
import type { X509Certificate } from 'node:crypto';

/** Distinct peer leaves kept; a node talks to a few hundred identities at most, and rotation replaces them daily. */
const LIMIT = 512;
const byDer = new Map<string, X509Certificate>();

/**
 * The parsed certificate for `der` (the same object for the same bytes). Safe to share: an X509Certificate is immutable,
 * and what a connection proves (its chain's verification, its handshake) is judged per connection by the caller.
 */
export function certificateOfDer(der: Buffer): X509Certificate {
  const key = der.toString('latin1');
  const known = byDer.get(key);
  if (known !== undefined) return known;
  // node:crypto loads with the first tunnel, not with the runtime (an idle node never needs it).
  const cert = new (process.getBuiltinModule('node:crypto').X509Certificate)(der);
  if (byDer.size >= LIMIT) byDer.delete(byDer.keys().next().value as string);
  byDer.set(key, cert);
  return cert;
}
