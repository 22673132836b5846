// The HBONE client's keepalive PINGs: a session destroyed while its socket still closes is never pinged (ping() throws then).
import { EventEmitter } from 'node:events';
import type http2 from 'node:http2';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { keepAlive } from './hbone-client.js';

afterEach(() => {
  vi.useRealTimers();
});

/** The part of a ClientHttp2Session keepAlive uses; ping() throws on a destroyed session, as node:http2's does. */
class FakeSession extends EventEmitter {
  destroyed = false;
  pings = 0;
  ping(cb: (err: Error | null) => void): boolean {
    if (this.destroyed) throw Object.assign(new Error('The session has been destroyed'), { code: 'ERR_HTTP2_INVALID_SESSION' });
    this.pings++;
    cb(null);
    return true;
  }
}

describe('keepAlive', () => {
  it('pings a live session and stops, without throwing, once it is destroyed but not yet closed', () => {
    vi.useFakeTimers();
    const session = new FakeSession();
    keepAlive(session as unknown as http2.ClientHttp2Session);
    vi.advanceTimersByTime(25_000);
    expect(session.pings).toBe(2);
    // node:http2 emits 'close' only once the socket closed, which waits for the peer's FIN after close_notify.
    session.destroyed = true;
    expect(() => vi.advanceTimersByTime(60_000)).not.toThrow();
    expect(session.pings).toBe(2);
  });
});
