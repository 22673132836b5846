/** Opens the upstream TCP connection with a connect timeout; failures become WeftErrors that say which address and why. */
import net from 'node:net';
import { WeftError, systemErrorCode } from '../errors.js';
import { formatAddr, type SocketAddr } from './original-destination.js';
import { requireNativeSocket } from '../native/weft-socket.js';
import { egressSocket, type Egress } from './egress.js';

export interface ConnectOptions {
  timeoutMs: number;
  signal?: AbortSignal;
  /**
   * Connect from this (foreign) address: source-IP preservation toward the destination pod, so it sees the client's
   * IP rather than weft's. Needs CAP_NET_ADMIN and the capture rules of cni/ (replies are routed back to weft).
   */
  source?: string;
  /** Create the socket in a pod's network namespace (in-pod capture); `source` then binds it there. */
  egress?: Egress;
}

/** A socket bound to `source` with IP_TRANSPARENT, connected by Node itself (so timeouts and errors are the usual ones). */
function transparentSocket(source: string, target: SocketAddr): net.Socket {
  const fd = requireNativeSocket('source-IP preservation').bindTransparent(source);
  // manualStart: reading an unconnected socket would fail; Node starts reading after 'connect'.
  const socket = new net.Socket({ fd, readable: true, writable: true, allowHalfOpen: true, manualStart: true } as net.SocketConstructorOpts);
  socket.setNoDelay(true);
  return socket.connect({ host: target.address, port: target.port });
}

export function connectUpstream(target: SocketAddr, opts: ConnectOptions): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    let socket: net.Socket;
    try {
      socket =
        opts.egress !== undefined
          ? egressSocket(opts.egress, target, opts.source)
          : opts.source === undefined
            ? net.connect({ host: target.address, port: target.port, allowHalfOpen: true, noDelay: true }) : transparentSocket(opts.source, target);
    } catch (err) {
      reject(new WeftError('WEFT_ERR_UPSTREAM_CONNECT', `connect to ${formatAddr(target)} from ${opts.source ?? 'weft'} failed: ${(err as Error).message}`, { cause: err }));
      return;
    }
    let timer: NodeJS.Timeout | undefined = setTimeout(() => {
      socket.destroy();
      settle(new WeftError('WEFT_ERR_UPSTREAM_TIMEOUT', `upstream ${formatAddr(target)} did not accept the connection within ${opts.timeoutMs} ms (is a firewall dropping packets?)`));
    }, opts.timeoutMs);
    const onAbort = (): void => {
      socket.destroy();
      settle(new WeftError('WEFT_ERR_UPSTREAM_CONNECT', `connect to ${formatAddr(target)} abandoned: the client went away`));
    };
    const settle = (err?: Error): void => {
      if (timer === undefined) return;
      clearTimeout(timer);
      timer = undefined;
      opts.signal?.removeEventListener('abort', onAbort);
      socket.off('error', onError);
      if (err === undefined) resolve(socket);
      else reject(err);
    };
    const onError = (err: Error): void => {
      const code = systemErrorCode(err) ?? 'error';
      settle(new WeftError('WEFT_ERR_UPSTREAM_CONNECT', `connect to ${formatAddr(target)} failed: ${code}${code === 'ECONNREFUSED' ? ' (nothing listens on that port)' : ''}`, { cause: err }));
    };
    socket.once('connect', () => settle());
    socket.once('error', onError);
    if (opts.signal?.aborted === true) onAbort();
    else opts.signal?.addEventListener('abort', onAbort, { once: true });
  });
}
