/** Connects the HBONE server to L4 authorization: evaluates each CONNECT and registers established tunnels for policy re-checks. */
import { authorize } from '../authz/authorizer.js';
import type { ConnectionAttributes } from '../authz/authz-policy.js';
import type { LiveConnections } from '../authz/live-connections.js';
import type { HboneServerOptions, InboundTunnel } from './hbone-server.js';

export function tunnelAttributes(t: InboundTunnel): ConnectionAttributes {
  // The TCP peer, not `forwarded: for`: a header is the client's claim, the peer address is what the network delivered.
  return { sourceIdentity: t.sourceIdentity, sourceIp: t.peer.address, destination: t.destination, destinationIp: t.destinationAddr.address, destinationPort: t.destinationAddr.port };
}

export function tunnelAuthorization(live: LiveConnections): Pick<HboneServerOptions, 'authorize' | 'onConnection'> {
  return {
    authorize: (t) => authorize(t.snapshot, tunnelAttributes(t)),
    onConnection: (t, control) => {
      const remove = live.add(tunnelAttributes(t), control.close);
      void control.closed.then(remove);
    },
  };
}
