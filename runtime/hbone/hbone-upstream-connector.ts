/**
 * The L7 proxy's upstream connector: a destination workload that speaks HBONE is reached over an HBONE tunnel that
 * presents the certificate of the local workload the connection is made for (the client pod, or the waypoint), as
 * ztunnel would carry it; everything else (TCP workloads, addresses outside the mesh, no identity) is plain TCP.
 */
import net from 'node:net';
import type { ConnectFn } from '../l7/http1-pool.js';
import type { ProxyState } from '../state/proxy-state.js';
import type { HboneClient } from './hbone-client.js';
import { PendingTunnel } from './pending-tunnel.js';
import { egressSocket, type Egress } from '../l4/egress.js';

/**
 * `egressFor` (in-pod capture): a plain-TCP destination pod captured on this node is dialled from inside its own
 * namespace with weft's mark, past its inbound redirect (from weft's node namespace it would be captured again).
 */
export function hboneUpstreamConnector(state: ProxyState, client: HboneClient, egressFor?: (ip: string) => Egress | undefined): ConnectFn {
  return (address, port, identity) => {
    const snapshot = state.current;
    const destination = identity === undefined ? undefined : snapshot.workloadByIp(address);
    if (identity === undefined || destination?.protocol !== 'HBONE') {
      const egress = egressFor?.(address);
      return egress === undefined ? net.connect({ host: address, port }) : egressSocket(egress, { address, port });
    }
    return new PendingTunnel((signal) =>
      client.connect({
        sourceIdentity: identity,
        destination: { address, port },
        destinationIdentities: [destination.identity],
        // The pod's own address, which its node's HBONE listener serves and the CONNECT's :authority must match.
        via: { address, port: snapshot.config.hbone.port },
        timeoutMs: snapshot.config.limits.connectTimeoutMs,
        signal,
      }),
    );
  };
}
