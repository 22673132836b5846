/** Keep-alive pool of raw HTTP/1.1 upstream sockets per endpoint: one data listener per socket for its whole life, handed from exchange to exchange, with a bounded queue of waiters (Envoy's pending requests). */
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { WeftError } from '../errors.js';
import { createHttp1Transport, type Http1Transport } from './http1-transport.js';
import { wallNow } from './loop-clock.js';

/** The exchange currently using a connection; the socket's listeners forward to it. */
export interface UpstreamOwner {
  onUpstreamData(chunk: Buffer): void;
  /** The socket closed (cleanly or not); `error` is the socket error, if any. */
  onUpstreamClose(error: Error | undefined): void;
  onUpstreamDrain(): void;
}

/**
 * Opens an upstream connection. `identity` is the local workload it is opened for (see L7Target.upstreamIdentity):
 * an HBONE-aware connector presents that workload's certificate. It may return a stream still connecting, as a
 * net.Socket is: `connecting` true until its 'connect' event.
 */
export type ConnectFn = (address: string, port: number, identity?: string) => Duplex;

/** Whether `socket` is still being opened (a net.Socket mid-connect, or a tunnel awaiting its CONNECT answer). */
export function isConnecting(socket: Duplex): boolean {
  return (socket as Duplex & { connecting?: boolean }).connecting === true;
}

/** What the pool reports to the cluster so Envoy-style connection thresholds hold across endpoints. */
export interface ConnectionBudget {
  connections: number;
  readonly maxConnections: number;
  readonly maxPendingRequests: number;
  pending: number;
  readonly connectTimeoutMs: number;
  readonly maxRequestsPerConnection: number;
  /** Counts `upstream_cx_overflow`-like events for metrics. */
  onOverflow(kind: 'connections' | 'pending'): void;
}

export class Http1UpstreamConnection {
  readonly socket: Duplex;
  readonly io: Http1Transport;
  readonly pool: Http1Pool;
  owner: UpstreamOwner | null = null;
  /** Requests sent on this connection, for maxRequestsPerConnection and for the stale-connection retry. */
  requests = 0;
  idleSince = 0;
  closed = false;
  readonly #budget: ConnectionBudget;

  constructor(socket: Duplex, pool: Http1Pool, budget: ConnectionBudget) {
    this.socket = socket;
    this.pool = pool;
    this.#budget = budget;
    this.io = createHttp1Transport(socket, {
      onData: (chunk) => {
        const owner = this.owner;
        // Bytes on an idle keep-alive connection are a protocol violation; the connection cannot be trusted again.
        if (owner === null) socket.destroy();
        else owner.onUpstreamData(chunk);
      },
      onEnd: () => {
        // Node ends our side (allowHalfOpen is off); 'close' follows and reports it.
      },
      onDrain: () => this.owner?.onUpstreamDrain(),
      onClose: (error) => {
        this.closed = true;
        this.#budget.connections--;
        this.pool.removed(this);
        const owner = this.owner;
        this.owner = null;
        owner?.onUpstreamClose(error);
      },
    });
  }

  destroy(): void {
    this.owner = null;
    this.socket.destroy();
  }
}

/** Who waits for a connection: the exchange itself (an object, so that acquiring allocates no callback). */
export interface PoolWaiter {
  onConnection(conn: Http1UpstreamConnection | Error): void;
}

export class Http1Pool {
  readonly address: string;
  readonly port: number;
  /** The local workload these connections are opened for; connections are never shared across identities. */
  readonly identity: string | undefined;
  readonly #connect: ConnectFn;
  readonly #idle: Http1UpstreamConnection[] = [];
  readonly #waiters: { budget: ConnectionBudget; cb: PoolWaiter }[] = [];
  readonly #all = new Set<Http1UpstreamConnection>();

  constructor(address: string, port: number, connect: ConnectFn, identity?: string) {
    this.address = address;
    this.port = port;
    this.identity = identity;
    this.#connect = connect;
  }

  get size(): number {
    return this.#all.size;
  }

  get idleCount(): number {
    return this.#idle.length;
  }

  /**
   * Gets a connection: an idle one at once (LIFO keeps the warmest socket), a new one when the budget allows, or
   * a place in the queue. Returns false when the queue is full too (the caller answers 503 with flag UO).
   */
  acquire(budget: ConnectionBudget, cb: PoolWaiter): boolean {
    const idle = this.#idle.pop();
    if (idle !== undefined) {
      cb.onConnection(idle);
      return true;
    }
    if (budget.connections < budget.maxConnections) {
      this.#open(budget, cb);
      return true;
    }
    budget.onOverflow('connections');
    if (budget.pending >= budget.maxPendingRequests) {
      budget.onOverflow('pending');
      return false;
    }
    budget.pending++;
    this.#waiters.push({ budget, cb });
    return true;
  }

  /** Returns a connection after a complete exchange; `reusable` is false when either side asked to close. */
  release(conn: Http1UpstreamConnection, reusable: boolean, budget: ConnectionBudget): void {
    conn.owner = null;
    if (!reusable || conn.closed || (budget.maxRequestsPerConnection > 0 && conn.requests >= budget.maxRequestsPerConnection)) {
      conn.destroy();
      return;
    }
    // Checked first: shift() is a builtin call even on an empty queue, and the queue is empty for nearly every release.
    if (this.#waiters.length !== 0) {
      const waiter = this.#waiters.shift()!;
      waiter.budget.pending--;
      waiter.cb.onConnection(conn);
      return;
    }
    conn.idleSince = wallNow();
    this.#idle.push(conn);
  }

  /** A waiter that gave up (its request timed out or the client left). */
  cancel(cb: PoolWaiter): void {
    const i = this.#waiters.findIndex((w) => w.cb === cb);
    if (i !== -1) {
      this.#waiters[i]!.budget.pending--;
      this.#waiters.splice(i, 1);
    }
  }

  removed(conn: Http1UpstreamConnection): void {
    this.#all.delete(conn);
    const i = this.#idle.indexOf(conn);
    if (i !== -1) this.#idle.splice(i, 1);
    // A freed connection slot lets the oldest waiter open a new connection.
    const waiter = this.#waiters[0];
    if (waiter !== undefined && waiter.budget.connections < waiter.budget.maxConnections) {
      this.#waiters.shift();
      waiter.budget.pending--;
      this.#open(waiter.budget, waiter.cb);
    }
  }

  /** Closes idle connections unused since `before` (ms since epoch). */
  sweepIdle(before: number): void {
    for (const conn of [...this.#idle]) if (conn.idleSince < before) conn.destroy();
  }

  closeAll(): void {
    for (const w of this.#waiters.splice(0)) {
      w.budget.pending--;
      w.cb.onConnection(new WeftError('WEFT_ERR_UPSTREAM_CONNECT', `upstream pool ${this.address}:${this.port} closed`));
    }
    for (const conn of [...this.#all]) conn.destroy();
  }

  #open(budget: ConnectionBudget, cb: PoolWaiter): void {
    budget.connections++;
    let socket: Duplex;
    try {
      socket = this.#connect(this.address, this.port, this.identity);
    } catch (err) {
      budget.connections--;
      cb.onConnection(new WeftError('WEFT_ERR_UPSTREAM_CONNECT', `connect to ${this.address}:${this.port} failed`, { cause: err }));
      return;
    }
    const conn = new Http1UpstreamConnection(socket, this, budget);
    this.#all.add(conn);
    let settled = false;
    const timer = setTimeout(() => {
      if (settled) return;
      settled = true;
      conn.destroy();
      cb.onConnection(new WeftError('WEFT_ERR_UPSTREAM_CONNECT', `connect to ${this.address}:${this.port} timed out after ${budget.connectTimeoutMs} ms`));
    }, budget.connectTimeoutMs);
    const onConnect = (): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.off('close', onEarlyClose);
      if (socket instanceof net.Socket) socket.setNoDelay(true);
      cb.onConnection(conn);
    };
    const onEarlyClose = (): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      cb.onConnection(new WeftError('WEFT_ERR_UPSTREAM_CONNECT', `connect to ${this.address}:${this.port} failed; is the workload listening on that port?`));
    };
    socket.once('close', onEarlyClose);
    if (isConnecting(socket)) socket.once('connect', onConnect);
    else process.nextTick(onConnect);
  }
}

export function defaultConnect(address: string, port: number): Duplex {
  return net.connect({ host: address, port });
}
