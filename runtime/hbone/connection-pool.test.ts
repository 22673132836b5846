import { afterEach, describe, expect, it, vi } from 'vitest';
import { EventEmitter } from 'node:events';
import type http2 from 'node:http2';
import { ConnectionPool } from './connection-pool.js';

/** Just enough of a ClientHttp2Session for the pool's bookkeeping. */
function fakeSession(maxConcurrentStreams = 1000): http2.ClientHttp2Session {
  const s = Object.assign(new EventEmitter(), {
    closed: false,
    destroyed: false,
    remoteSettings: { maxConcurrentStreams },
    close() {
      s.closed = true;
      s.emit('close');
    },
    destroy() {
      s.destroyed = true;
      s.emit('close');
    },
  });
  return s as unknown as http2.ClientHttp2Session;
}

afterEach(() => vi.useRealTimers());

describe('ConnectionPool', () => {
  it('serializes creation per key: concurrent acquirers share one new connection', async () => {
    const pool = new ConnectionPool({ maxStreamsPerConnection: 100, idleTimeoutMs: 1000 });
    let created = 0;
    const create = async () => {
      created++;
      await new Promise((r) => setTimeout(r, 5));
      return fakeSession();
    };
    const conns = await Promise.all(Array.from({ length: 10 }, () => pool.acquire('k', create)));
    expect(created).toBe(1);
    expect(new Set(conns).size).toBe(1);
    expect(pool.stats()).toEqual({ k: { connections: 1, streams: 10 } });
    pool.close();
  });

  it('respects the peer SETTINGS_MAX_CONCURRENT_STREAMS below the configured limit, and GOAWAY', async () => {
    const pool = new ConnectionPool({ maxStreamsPerConnection: 100, idleTimeoutMs: 1000 });
    const sessions: http2.ClientHttp2Session[] = [];
    const create = () => {
      const s = fakeSession(2);
      sessions.push(s);
      return Promise.resolve(s);
    };
    for (let i = 0; i < 3; i++) await pool.acquire('k', create);
    expect(sessions).toHaveLength(2);
    sessions[1]?.emit('goaway');
    await pool.acquire('k', create);
    expect(sessions).toHaveLength(3);
    pool.close();
  });

  it('releases a connection after it has been idle for the timeout, not before', async () => {
    vi.useFakeTimers();
    const pool = new ConnectionPool({ maxStreamsPerConnection: 100, idleTimeoutMs: 300_000 });
    const session = fakeSession();
    const conn = await pool.acquire('k', () => Promise.resolve(session));
    pool.release(conn);
    await vi.advanceTimersByTimeAsync(299_000);
    expect(session.closed).toBe(false);
    const again = await pool.acquire('k', () => Promise.reject(new Error('must reuse')));
    expect(again).toBe(conn);
    pool.release(again);
    await vi.advanceTimersByTimeAsync(300_000);
    expect(session.closed).toBe(true);
    expect(pool.stats()).toEqual({});
    pool.close();
  });
});
