/**
 * istiod's node check (security/pkg/server/ca/node_auth.go) for weft's built-in CA in a cluster: a node obtains a
 * certificate only for an identity that a pod on this node runs as, so one compromised node cannot mint every identity.
 */
import { WeftError } from '../errors.js';
import { createLogger } from '../log.js';
import type { CaClient } from './workload-certificate.js';

const log = createLogger('identity');

/** `hostsIdentity(id)` answers from the live model: is a pod with this namespace and service account scheduled here? */
export function nodeCheckedCaClient(client: CaClient, node: string, hostsIdentity: (identity: string) => boolean): CaClient {
  return {
    fetchCertificate: async (identity, ttlSeconds) => {
      if (!hostsIdentity(identity)) {
        log.warn({ identity, node }, 'certificate refused: no pod on this node runs as this identity');
        throw new WeftError('WEFT_ERR_IDENTITY', `node ${node} may not obtain a certificate for ${identity}: no pod with that service account runs on this node`);
      }
      return client.fetchCertificate(identity, ttlSeconds);
    },
    ...(client.close === undefined ? {} : { close: () => client.close?.() }),
  };
}
