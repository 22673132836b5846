/** Opens the upstream TCP connection with a connect timeout; failures become WeftErrors that say which address and why. */
import net from 'node:net';
import { WeftError, systemErrorCode } from '../errors.js';
import { formatAddr, type SocketAddr } from './original-destination.js';

export interface ConnectOptions {
  timeoutMs: number;
  signal?: AbortSignal;
}

export function connectUpstream(target: SocketAddr, opts: ConnectOptions): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: target.address, port: target.port, allowHalfOpen: true, noDelay: true });
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
