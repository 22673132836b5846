/** The downstream side of cleartext HTTP/2 (h2c) and gRPC: sessions with weft's limits, each stream handed to an H2Exchange (route, filters, retries, mirroring, pooled upstream); rapid-reset and header floods end the session with GOAWAY. */
import http2 from 'node:http2';
import type { Duplex } from 'node:stream';
import { H2Exchange } from './h2-exchange.js';
import { H2UpstreamPool } from './h2-upstream-pool.js';
import type { ConnectFn } from './http1-pool.js';
import type { L7Context, L7Target } from './l7-context.js';

const { NGHTTP2_ENHANCE_YOUR_CALM, NGHTTP2_REFUSED_STREAM } = http2.constants;

export interface H2cServer {
  handle(socket: Duplex, target: L7Target, firstBytes: Buffer): void;
  close(): Promise<void>;
  /** Drain: every session gets GOAWAY (NO_ERROR); streams in flight finish, new ones go to a new connection. */
  goaway(): void;
  readonly sessions: number;
  readonly upstreamSessions: number;
}

export function createH2cServer(ctx: L7Context, connect: ConnectFn): H2cServer {
  const server = http2.createServer({
    maxSessionRejectedStreams: 100,
    maxHeaderListPairs: ctx.limits.maxHeaders,
    maxSessionInvalidFrames: 100,
    settings: { maxConcurrentStreams: ctx.limits.h2MaxConcurrentStreams, maxHeaderListSize: ctx.limits.maxRequestHeadersBytes, enablePush: false },
  });
  const pool = new H2UpstreamPool(connect);
  const sessions = new Set<http2.ServerHttp2Session>();
  const targets = new WeakMap<http2.ServerHttp2Session, L7Target>();
  /** The 'session' event fires synchronously inside emit('connection'), so the target handed to handle() is still here. */
  let arriving: L7Target | undefined;

  server.on('session', (session: http2.ServerHttp2Session) => {
    sessions.add(session);
    if (arriving !== undefined) targets.set(session, arriving);
    session.on('close', () => sessions.delete(session));
    session.on('error', () => session.destroy());
    // A session that starts while the proxy drains is told at once to take its next requests elsewhere.
    if (ctx.draining) process.nextTick(() => !session.closed && !session.destroyed && session.goaway(http2.constants.NGHTTP2_NO_ERROR));
    // Rapid reset (CVE-2023-44487): streams the client cancels before their response count against a per-second budget.
    let windowStart = Date.now();
    let resets = 0;
    session.on('stream', (stream: http2.ServerHttp2Stream) => {
      stream.on('close', () => {
        if (stream.rstCode === 0 || stream.headersSent) return;
        const now = Date.now();
        if (now - windowStart > 1000) {
          windowStart = now;
          resets = 0;
        }
        if (++resets > ctx.limits.h2MaxResetsPerSecond && !session.destroyed) {
          session.goaway(NGHTTP2_ENHANCE_YOUR_CALM);
          session.destroy();
        }
      });
    });
    session.on('frameError', () => session.destroy());
  });

  server.on('stream', (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => {
    const target = stream.session === undefined ? undefined : targets.get(stream.session as http2.ServerHttp2Session);
    if (target === undefined) {
      stream.close(NGHTTP2_REFUSED_STREAM);
      return;
    }
    new H2Exchange(ctx, pool, target, stream, headers).start();
  });

  return {
    handle(socket, target, firstBytes) {
      socket.pause();
      if (firstBytes.length > 0) socket.unshift(firstBytes);
      arriving = target;
      try {
        server.emit('connection', socket);
      } finally {
        arriving = undefined;
      }
    },
    get sessions() {
      return sessions.size;
    },
    get upstreamSessions() {
      return pool.size;
    },
    goaway() {
      for (const s of sessions) if (!s.closed && !s.destroyed) s.goaway(http2.constants.NGHTTP2_NO_ERROR);
    },
    async close() {
      for (const s of sessions) s.destroy();
      pool.closeAll();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
