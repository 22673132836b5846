/**
 * Binds a TCP listener, ordinary or transparent (IP_TRANSPARENT through the native addon), optionally SO_REUSEPORT, or
 * adopts the ones a predecessor handed over, and stops accepting when the drain signal fires; every data-path listener
 * is made here.
 */
import net from 'node:net';
import { WeftError } from '../errors.js';
import { parseSocketAddress } from '../config/socket-address.js';
import { requireNativeSocket } from '../native/weft-socket.js';
import { handleFd, socketHandover } from '../upgrade/socket-handover.js';

export interface ListenOptions {
  address: string;
  transparent?: boolean;
  /** Closes the listener (not its connections) when aborted. */
  signal?: AbortSignal;
  /** Passed to net.Server: the handler decides when to start reading. */
  pauseOnConnect?: boolean;
  /**
   * SO_REUSEPORT: several event loops (runtime/workers) each bind the same address and the kernel spreads new
   * connections between their accept queues, so no thread relays connections. Also what a hot upgrade binds with.
   */
  reusePort?: boolean;
  /**
   * A listening socket prepared elsewhere (in-pod: created inside a pod's namespace); `address` then only names it.
   * Called only when no predecessor handed this listener's socket over.
   */
  fd?: () => number;
  /** Made after start-up (in-pod, per pod): a successor keeps the inherited socket for it past commit (SocketRecord.late). */
  late?: boolean;
}

export interface BoundListener {
  server: net.Server;
  address: string;
  port: number;
  transparent: boolean;
  /** Stops accepting; open connections are left alone (drain decides their fate). */
  close(): Promise<void>;
  /** Destroys every connection this listener accepted that is still open (end of drain). */
  destroyConnections(): void;
}

function transparentFd(name: string, address: string, addr: { host: string; port: number }, reusePort: boolean): number {
  const native = requireNativeSocket(`transparent ${name} listener`);
  try {
    return native.listenTransparent(addr.host, addr.port, 4096, reusePort);
  } catch (err) {
    throw new WeftError('WEFT_ERR_LISTEN', `${name} listener: cannot listen on ${address} (transparent): ${(err as Error).message}`, { cause: err });
  }
}

function listenOn(server: net.Server, name: string, address: string, target: net.ListenOptions | { fd: number }): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onError = (err: Error): void => reject(new WeftError('WEFT_ERR_LISTEN', `${name} listener: cannot listen on ${address}: ${err.message} (is another process using the port?)`, { cause: err }));
    server.once('error', onError);
    server.listen(target as net.ListenOptions, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

export async function listen(name: string, opts: ListenOptions, onConnection: (socket: net.Socket) => void): Promise<BoundListener> {
  const addr = parseSocketAddress(opts.address);
  if (addr === undefined) throw new WeftError('WEFT_ERR_LISTEN', `${name} listener: "${opts.address}" is not an ip:port address`);
  const key = `${name} ${opts.address}`;
  const create = (): net.Server => net.createServer({ pauseOnConnect: opts.pauseOnConnect ?? false, noDelay: true, allowHalfOpen: true }, onConnection);
  // A hot upgrade hands over the very sockets (accept queues included); they start accepting at commit.
  const inherited = socketHandover.take(key, 'tcp');
  const servers = inherited.length === 0 ? [create()] : inherited.map(create);
  let port = addr.port;
  if (inherited.length > 0) {
    port = inherited[0]?.port ?? port;
    await socketHandover.defer(async () => {
      for (const [i, s] of inherited.entries()) await listenOn(servers[i] as net.Server, name, opts.address, { fd: s.fd });
    });
  } else {
    // A transparent socket accepts connections for any destination; libuv adopts the fd the addon prepared.
    const fd = opts.fd?.() ?? (opts.transparent === true ? transparentFd(name, opts.address, addr, opts.reusePort === true) : undefined);
    await listenOn(servers[0] as net.Server, name, opts.address, fd === undefined ? { host: addr.host, port: addr.port, backlog: 4096, reusePort: opts.reusePort === true } : { fd });
    port = (servers[0]?.address() as net.AddressInfo).port;
  }
  const open = new Set<net.Socket>();
  const released: (() => void)[] = [];
  for (const server of servers) {
    server.on('connection', (socket: net.Socket) => {
      open.add(socket);
      socket.once('close', () => open.delete(socket));
    });
    released.push(socketHandover.hold({ key, kind: 'tcp', port, ...(opts.late === true ? { late: true } : {}) }, () => (server.listening ? handleFd((server as unknown as { _handle?: unknown })._handle) : undefined)));
  }
  // net.Server.close() only calls back once every connection ended; stopping the accept loop is what matters here.
  const close = (): Promise<void> => {
    for (const r of released) r();
    for (const server of servers) if (server.listening) server.close();
    return Promise.resolve();
  };
  opts.signal?.addEventListener('abort', () => void close(), { once: true });
  const destroyConnections = (): void => {
    for (const socket of open) socket.destroy();
  };
  return { server: servers[0] as net.Server, address: addr.host, port, transparent: opts.transparent === true, close, destroyConnections };
}
