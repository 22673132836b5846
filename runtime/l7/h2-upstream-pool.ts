/** Pooled HTTP/2 (h2c) client sessions per upstream endpoint for h2 and gRPC traffic: streams share a session up to its concurrency limit, a new session opens beyond it, dead sessions are dropped. */
import http2 from 'node:http2';
import type { Duplex } from 'node:stream';
import type { Agent } from 'undici';
import type { ConnectFn } from './http1-pool.js';
import { UndiciAgents } from './undici-agents.js';

/** ztunnel's pool cap (POOL_MAX_STREAMS_PER_CONNECTION) and Envoy's default SETTINGS_MAX_CONCURRENT_STREAMS for upstreams. */
const MAX_STREAMS_PER_SESSION = 100;

interface PooledSession {
  session: http2.ClientHttp2Session;
  active: number;
}

export class H2UpstreamPool {
  readonly #sessions = new Map<string, PooledSession[]>();
  readonly #connect: ConnectFn;
  readonly #http1: UndiciAgents;

  constructor(connect: ConnectFn) {
    this.#connect = connect;
    this.#http1 = new UndiciAgents(connect, { keepAliveTimeout: 60_000 });
  }

  /** undici for h2c clients of HTTP/1.1 services (the downgrade path), by the identity connections are opened for. */
  http1(identity: string | undefined): Agent {
    return this.#http1.for(identity);
  }

  get size(): number {
    let n = 0;
    for (const list of this.#sessions.values()) n += list.length;
    return n;
  }

  /**
   * A session to `address:port`, opened for `identity` (see L7Target.upstreamIdentity), with room for one more stream;
   * the caller must call `done` when its stream closes.
   */
  acquire(address: string, port: number, connectTimeoutMs: number, identity: string | undefined): { session: http2.ClientHttp2Session; done: () => void } {
    const key = `${address}|${port}|${identity ?? ''}`;
    let list = this.#sessions.get(key);
    if (list === undefined) this.#sessions.set(key, (list = []));
    const limit = (s: PooledSession): number => Math.min(MAX_STREAMS_PER_SESSION, s.session.remoteSettings.maxConcurrentStreams ?? MAX_STREAMS_PER_SESSION);
    let pooled = list.find((s) => !s.session.closed && !s.session.destroyed && s.active < limit(s));
    if (pooled === undefined) {
      const authority = address.includes(':') ? `http://[${address}]:${port}` : `http://${address}:${port}`;
      const session = http2.connect(authority, { createConnection: (): Duplex => this.#connect(address, port, identity), settings: { enablePush: false } });
      const entry: PooledSession = { session, active: 0 };
      pooled = entry;
      list.push(entry);
      const timer = setTimeout(() => session.destroy(new Error(`h2 connect to ${address}:${port} timed out`)), connectTimeoutMs);
      session.once('connect', () => clearTimeout(timer));
      session.on('error', () => {
        // Streams see the failure through their own 'error'; the session just leaves the pool.
      });
      session.once('close', () => {
        clearTimeout(timer);
        const l = this.#sessions.get(key);
        const i = l?.indexOf(entry) ?? -1;
        if (l !== undefined && i !== -1) l.splice(i, 1);
      });
      session.once('goaway', () => {
        const l = this.#sessions.get(key);
        const i = l?.indexOf(entry) ?? -1;
        if (l !== undefined && i !== -1) l.splice(i, 1);
        if (entry.active === 0) session.close();
      });
    }
    const p = pooled;
    p.active++;
    p.session.ref();
    let released = false;
    return {
      session: p.session,
      done: () => {
        if (released) return;
        released = true;
        p.active--;
        // An idle session must not keep the process alive.
        if (p.active === 0) p.session.unref();
      },
    };
  }

  closeAll(): void {
    for (const list of this.#sessions.values()) for (const s of [...list]) s.session.destroy();
    this.#sessions.clear();
    this.#http1.destroy();
  }
}
