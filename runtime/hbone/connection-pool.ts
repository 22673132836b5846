/** HBONE connection pool (ztunnel src/proxy/pool.rs): connections keyed by source identity, source IP, destination SANs and address; up to N streams each; creation serialized per key; idle connections released. */
import type http2 from 'node:http2';

export interface PooledConnection {
  session: http2.ClientHttp2Session;
  active: number;
  /** min(configured streams per connection, peer's SETTINGS_MAX_CONCURRENT_STREAMS). */
  maxStreams(): number;
  idleTimer: NodeJS.Timeout | undefined;
  /** GOAWAY received or drain started: finish its streams, open none. */
  draining: boolean;
}

export interface PoolOptions {
  maxStreamsPerConnection: number;
  idleTimeoutMs: number;
}

export interface PoolKeyParts {
  sourceIdentity: string;
  sourceAddress?: string;
  destinationIdentities: readonly string[];
  via: { address: string; port: number };
}

export function poolKey(p: PoolKeyParts): string {
  return `${p.sourceIdentity}|${p.sourceAddress ?? '*'}|${[...p.destinationIdentities].sort().join(',')}|${p.via.address}:${p.via.port}`;
}

function usable(c: PooledConnection): boolean {
  const s = c.session;
  return !c.draining && !s.closed && !s.destroyed && c.active < c.maxStreams();
}

export class ConnectionPool {
  readonly #options: PoolOptions;
  readonly #connections = new Map<string, PooledConnection[]>();
  /** One creation in flight per key: concurrent callers wait for it instead of racing (ztunnel#864). */
  readonly #creating = new Map<string, Promise<void>>();
  #closed = false;

  constructor(options: PoolOptions) {
    this.#options = options;
  }

  /** A connection with a free stream slot, reserved for the caller; call `release` when the stream ends. */
  async acquire(key: string, create: () => Promise<http2.ClientHttp2Session>): Promise<PooledConnection> {
    for (;;) {
      if (this.#closed) throw new Error('HBONE pool is closed');
      const found = this.#connections.get(key)?.find(usable);
      if (found !== undefined) {
        this.#reserve(found);
        return found;
      }
      const pending = this.#creating.get(key);
      if (pending !== undefined) {
        await pending;
        continue;
      }
      let created: PooledConnection | undefined;
      const creation = create().then((session) => {
        created = this.#add(key, session);
      });
      const settled = creation.finally(() => this.#creating.delete(key));
      this.#creating.set(
        key,
        settled.catch(() => undefined),
      );
      await settled;
      if (created !== undefined && usable(created)) {
        this.#reserve(created);
        return created;
      }
    }
  }

  release(conn: PooledConnection): void {
    conn.active = Math.max(0, conn.active - 1);
    if (conn.active > 0 || conn.session.destroyed) return;
    if (this.#options.idleTimeoutMs === 0) return;
    conn.idleTimer = setTimeout(() => {
      conn.idleTimer = undefined;
      if (conn.active === 0) conn.session.close();
    }, this.#options.idleTimeoutMs);
    conn.idleTimer.unref();
  }

  /** Connections per key (tests and /config_dump). */
  stats(): Record<string, { connections: number; streams: number }> {
    const out: Record<string, { connections: number; streams: number }> = {};
    for (const [key, list] of this.#connections) out[key] = { connections: list.length, streams: list.reduce((n, c) => n + c.active, 0) };
    return out;
  }

  close(): void {
    this.#closed = true;
    for (const list of this.#connections.values()) for (const c of list) {
      if (c.idleTimer !== undefined) clearTimeout(c.idleTimer);
      c.session.destroy();
    }
    this.#connections.clear();
  }

  #reserve(conn: PooledConnection): void {
    conn.active++;
    if (conn.idleTimer !== undefined) {
      clearTimeout(conn.idleTimer);
      conn.idleTimer = undefined;
    }
  }

  #add(key: string, session: http2.ClientHttp2Session): PooledConnection {
    const conn: PooledConnection = {
      session,
      active: 0,
      idleTimer: undefined,
      draining: false,
      maxStreams: () => Math.min(this.#options.maxStreamsPerConnection, session.remoteSettings.maxConcurrentStreams ?? Infinity),
    };
    let list = this.#connections.get(key);
    if (list === undefined) {
      list = [];
      this.#connections.set(key, list);
    }
    list.push(conn);
    session.once('goaway', () => (conn.draining = true));
    session.once('close', () => {
      if (conn.idleTimer !== undefined) clearTimeout(conn.idleTimer);
      const current = this.#connections.get(key);
      if (current === undefined) return;
      const rest = current.filter((c) => c !== conn);
      if (rest.length === 0) this.#connections.delete(key);
      else this.#connections.set(key, rest);
    });
    return conn;
  }
}
