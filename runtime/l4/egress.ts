/** Where an upstream socket is created when it is not weft's own namespace: in-pod capture opens it inside the pod's network namespace, so the connection leaves from the pod with the pod's address (or, bound transparently, the client's). */
import net from 'node:net';
import type { SocketAddr } from './original-destination.js';

export interface Egress {
  /** An unconnected, non-blocking TCP fd made in the pod's namespace, of the target's `family`; bound to `source` with IP_TRANSPARENT when given. */
  socketFd(source: string | undefined, family: 4 | 6): number;
}

/** A connecting net.Socket over an Egress fd: Node runs the connect, so timeouts and errors follow the ordinary path. */
export function egressSocket(egress: Egress, target: SocketAddr, source?: string): net.Socket {
  const fd = egress.socketFd(source, net.isIPv6(target.address) ? 6 : 4);
  // manualStart: reading an unconnected socket would fail; Node starts reading after 'connect'.
  const socket = new net.Socket({ fd, readable: true, writable: true, allowHalfOpen: true, manualStart: true } as net.SocketConstructorOpts);
  socket.setNoDelay(true);
  return socket.connect({ host: target.address, port: target.port });
}
