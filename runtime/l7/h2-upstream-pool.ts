/** Pooled HTTP/2 (h2c) client sessions per upstream endpoint for h2 and gRPC traffic: streams share a session up to its concurrency limit, a new session opens beyond it, dead sessions are dropped. */
import http2 from 'node:http2';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { Agent } from 'undici';
import type { ConnectFn } from './http1-pool.js';

/** ztunnel's pool cap (POOL_MAX_STREAMS_PER_CONNECTION) and Envoy's default SETTINGS_MAX_CONCURRENT_STREAMS for upstreams. */
const MAX_STREAMS_PER_SESSION = 100;

interface PooledSession {
  session: http2.ClientHttp2Session;
  active: number;
}

export class H2UpstreamPool {
  readonly #sessions = new Map<string, PooledSession[]>();
  readonly #connect: ConnectFn;
  #http1: Agent | undefined;

  constructor(connect: ConnectFn) {
    this.#connect = connect;
  }

  /** undici for h2c clients of HTTP/1.1 services (the downgrade path); connections go through the same connector. */
  get http1(): Agent {
    return (this.#http1 ??= new Agent({
      keepAliveTimeout: 60_000,
      connect: (opts, cb) => {
        const socket = this.#connect(opts.hostname, Number(opts.port));
        if (!(socket instanceof net.Socket) || !socket.connecting) return cb(null, socket as net.Socket);
        const onError = (err: Error): void => cb(err, null);
        socket.once('error', onError);
        socket.once('connect', () => {
          socket.off('error', onError);
          cb(null, socket);
        });
      },
    }));
  }

  get size(): number {
    let n = 0;
    for (const list of this.#sessions.values()) n += list.length;
    return n;
  }

  /** A session to `address:port` with room for one more stream; the caller must call `done` when its stream closes. */
  acquire(address: string, port: number, connectTimeoutMs: number): { session: http2.ClientHttp2Session; done: () => void } {
    const key = `${address}|${port}`;
    let list = this.#sessions.get(key);
    if (list === undefined) this.#sessions.set(key, (list = []));
    const limit = (s: PooledSession): number => Math.min(MAX_STREAMS_PER_SESSION, s.session.remoteSettings.maxConcurrentStreams ?? MAX_STREAMS_PER_SESSION);
    let pooled = list.find((s) => !s.session.closed && !s.session.destroyed && s.active < limit(s));
    if (pooled === undefined) {
      const authority = address.includes(':') ? `http://[${address}]:${port}` : `http://${address}:${port}`;
      const session = http2.connect(authority, { createConnection: (): Duplex => this.#connect(address, port), settings: { enablePush: false } });
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
    void this.#http1?.destroy();
    this.#http1 = undefined;
  }
}
