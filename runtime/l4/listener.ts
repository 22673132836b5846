/** Binds a TCP listener, ordinary or transparent (IP_TRANSPARENT through the native addon), optionally SO_REUSEPORT, and stops accepting when the drain signal fires; every data-path listener is made here. */
import net from 'node:net';
import { WeftError } from '../errors.js';
import { parseSocketAddress } from '../config/socket-address.js';
import { requireNativeSocket } from '../native/weft-socket.js';

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

export async function listen(name: string, opts: ListenOptions, onConnection: (socket: net.Socket) => void): Promise<BoundListener> {
  const addr = parseSocketAddress(opts.address);
  if (addr === undefined) throw new WeftError('WEFT_ERR_LISTEN', `${name} listener: "${opts.address}" is not an ip:port address`);
  const server = net.createServer({ pauseOnConnect: opts.pauseOnConnect ?? false, noDelay: true, allowHalfOpen: true }, onConnection);
  // A transparent socket accepts connections for any destination; libuv adopts the fd the addon prepared.
  const fd = opts.transparent === true ? transparentFd(name, opts.address, addr, opts.reusePort === true) : undefined;
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error): void => reject(new WeftError('WEFT_ERR_LISTEN', `${name} listener: cannot listen on ${opts.address}: ${err.message} (is another process using the port?)`, { cause: err }));
    server.once('error', onError);
    const onListening = (): void => {
      server.off('error', onError);
      resolve();
    };
    if (fd === undefined) server.listen({ host: addr.host, port: addr.port, backlog: 4096, reusePort: opts.reusePort === true }, onListening);
    else server.listen({ fd }, onListening);
  });
  const bound = server.address() as net.AddressInfo;
  const open = new Set<net.Socket>();
  server.on('connection', (socket: net.Socket) => {
    open.add(socket);
    socket.once('close', () => open.delete(socket));
  });
  // net.Server.close() only calls back once every connection ended; stopping the accept loop is what matters here.
  const close = (): Promise<void> => {
    if (server.listening) server.close();
    return Promise.resolve();
  };
  opts.signal?.addEventListener('abort', () => void close(), { once: true });
  const destroyConnections = (): void => {
    for (const socket of open) socket.destroy();
  };
  return { server, address: bound.address, port: bound.port, transparent: opts.transparent === true, close, destroyConnections };
}
