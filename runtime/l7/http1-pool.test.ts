import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { defaultConnect, Http1Pool, type ConnectionBudget, type Http1UpstreamConnection } from './http1-pool.js';

function budget(maxConnections: number, maxPendingRequests: number): ConnectionBudget & { overflows: string[] } {
  const overflows: string[] = [];
  return { connections: 0, maxConnections, maxPendingRequests, pending: 0, connectTimeoutMs: 5000, maxRequestsPerConnection: 0, overflows, onOverflow: (k) => void overflows.push(k) };
}

/** A waiter that records what it was handed. */
function waiter(): { got: (Http1UpstreamConnection | Error)[]; onConnection(c: Http1UpstreamConnection | Error): void; next(): Promise<Http1UpstreamConnection> } {
  const got: (Http1UpstreamConnection | Error)[] = [];
  let wake: (() => void) | undefined;
  return {
    got,
    onConnection(c) {
      got.push(c);
      wake?.();
    },
    async next() {
      if (got.length === 0) await new Promise<void>((r) => (wake = r));
      const c = got[got.length - 1]!;
      if (c instanceof Error) throw c;
      return c;
    },
  };
}

describe('Http1Pool', () => {
  const servers: net.Server[] = [];
  afterEach(async () => {
    for (const s of servers.splice(0)) await new Promise<void>((r) => s.close(() => r()));
  });

  async function origin(): Promise<number> {
    const server = net.createServer((s) => s.on('error', () => undefined));
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    return (server.address() as net.AddressInfo).port;
  }

  it('hands a released connection to the oldest waiter, and keeps it idle once nobody waits', async () => {
    const pool = new Http1Pool('127.0.0.1', await origin(), defaultConnect);
    const b = budget(1, 2);
    const first = waiter();
    expect(pool.acquire(b, first)).toBe(true);
    const conn = await first.next();
    const second = waiter();
    const third = waiter();
    expect(pool.acquire(b, second)).toBe(true);
    expect(pool.acquire(b, third)).toBe(true);
    expect(b.pending).toBe(2);
    // The queue is full: a fourth is refused.
    expect(pool.acquire(b, waiter())).toBe(false);
    expect(b.overflows).toEqual(['connections', 'connections', 'connections', 'pending']);

    pool.release(conn, true, b);
    expect(second.got).toEqual([conn]);
    expect(third.got).toEqual([]);
    expect(b.pending).toBe(1);
    pool.release(conn, true, b);
    expect(third.got).toEqual([conn]);
    expect(b.pending).toBe(0);
    // Nobody waits now: the connection goes idle and the next acquire gets it back at once.
    pool.release(conn, true, b);
    expect(pool.idleCount).toBe(1);
    const fourth = waiter();
    expect(pool.acquire(b, fourth)).toBe(true);
    expect(fourth.got).toEqual([conn]);
    expect(pool.idleCount).toBe(0);
    pool.closeAll();
  });

  it('destroys a connection released as not reusable instead of handing it to a waiter', async () => {
    const pool = new Http1Pool('127.0.0.1', await origin(), defaultConnect);
    const b = budget(1, 1);
    const first = waiter();
    pool.acquire(b, first);
    const conn = await first.next();
    const second = waiter();
    pool.acquire(b, second);
    pool.release(conn, false, b);
    expect(second.got).toEqual([]);
    // The closed socket frees its slot: the waiter gets a new connection.
    const fresh = await second.next();
    expect(fresh).not.toBe(conn);
    expect(b.pending).toBe(0);
    pool.closeAll();
  });
});
