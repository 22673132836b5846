// Resilience on weft's L7 path against failing real upstreams: retries and their budget, per-route and per-try timeouts, Envoy circuit-breaker thresholds and outlier ejection.
import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { fleetConfig, startFleet, startProxy, type ProxyHarness } from './l7-harness.js';
import type http from 'node:http';
import net from 'node:net';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

type Handler = (name: string, req: http.IncomingMessage, res: http.ServerResponse, n: number) => void;

async function setup(n: number, handler: Handler, extra: Record<string, unknown>): Promise<{ h: ProxyHarness; hits: () => number; get: (path?: string, method?: string, body?: string) => Promise<{ status: number; headers: Record<string, unknown>; body: string; upstream: string }> }> {
  let hits = 0;
  const fleet = await startFleet(n, (name, req, res) => {
    hits++;
    res.setHeader('x-upstream', name);
    handler(name, req, res, hits);
  });
  cleanups.push(() => fleet.close());
  const h = await startProxy(fleetConfig(n, fleet.port, () => ({}), extra), 'fleet.default', 80);
  cleanups.push(() => h.close());
  return {
    h,
    hits: () => hits,
    get: async (path = '/', method = 'GET', body?: string) => {
      const res = await request(`http://127.0.0.1:${h.port}${path}`, { method, body });
      return { status: res.statusCode, headers: res.headers, body: await res.body.text(), upstream: String(res.headers['x-upstream'] ?? '') };
    },
  };
}

const routeWith = (http: Record<string, unknown>): Record<string, unknown> => ({ routes: [{ host: 'fleet.default', http: [http] }] });

describe('L7 retries', () => {
  it('retries retriable status codes until one succeeds', async () => {
    const { get, hits, h } = await setup(1, (_n, _req, res, n) => {
      res.statusCode = n <= 2 ? 503 : 200;
      res.end(`try ${n}`);
    }, routeWith({ retries: { attempts: 3, retryOn: 'retriable-status-codes', backoffBaseMs: 1 } }));
    const r = await get();
    expect(r.status).toBe(200);
    expect(r.body).toBe('try 3');
    expect(hits()).toBe(3);
    await new Promise((res) => setImmediate(res));
    expect(h.accessLines.at(-1)).toMatchObject({ upstream_attempts: 3, response_code: 200 });
  });

  it('gives up after the attempts with flag URX', async () => {
    const { get, hits, h } = await setup(1, (_n, _req, res) => {
      res.statusCode = 503;
      res.end('down');
    }, routeWith({ retries: { attempts: 2, retryOn: '5xx', backoffBaseMs: 1 } }));
    const r = await get();
    expect(r.status).toBe(503);
    expect(hits()).toBe(3);
    expect(h.proxy.telemetry.count({ response_code: '503', response_flags: 'URX' })).toBe(1);
  });

  it('retries a reset GET but never a POST whose body was sent', async () => {
    let resets = 0;
    const { get, hits } = await setup(1, (_n, req, res) => {
      if (resets < 1 || req.method === 'POST') {
        resets++;
        req.socket.destroy();
        return;
      }
      res.end('ok');
    }, routeWith({ retries: { attempts: 2, retryOn: 'reset,connect-failure', backoffBaseMs: 1 } }));
    const g = await get('/');
    expect(g.status).toBe(200);
    expect(hits()).toBe(2);
    const p = await get('/', 'POST', 'payload');
    expect(p.status).toBe(503);
    expect(p.headers['x-weft-error']).toBe('WEFT_ERR_UPSTREAM_RESET');
    expect(hits()).toBe(3);
  });

  it('limits concurrent retries by the retry budget (flag UO)', async () => {
    const { get, hits, h } = await setup(1, (_n, _req, res) => {
      setTimeout(() => {
        res.statusCode = 503;
        res.end();
      }, 30);
    }, routeWith({ retries: { attempts: 3, retryOn: '5xx', budgetPercent: 0, minRetryConcurrency: 1, backoffBaseMs: 1 } }));
    const results = await Promise.all(Array.from({ length: 8 }, () => get()));
    expect(results.every((r) => r.status === 503)).toBe(true);
    // Without a budget 8 requests × 4 attempts = 32; with one retry slot far fewer reach the upstream.
    expect(hits()).toBeLessThan(20);
    expect(h.proxy.telemetry.count({ response_flags: 'UO' })).toBeGreaterThan(0);
  });
});

describe('L7 timeouts', () => {
  it('answers 504 UT when the route timeout passes', async () => {
    const { get, h } = await setup(1, (_n, _req, res) => void setTimeout(() => res.end('late'), 2000), routeWith({ timeoutMs: 80 }));
    const t0 = Date.now();
    const r = await get();
    expect(r.status).toBe(504);
    expect(r.headers['x-weft-error']).toBe('WEFT_ERR_UPSTREAM_TIMEOUT');
    // The upstream answers after 2 s; a 504 well before that is the route timeout at work.
    expect(Date.now() - t0).toBeLessThan(1500);
    expect(h.proxy.telemetry.count({ response_code: '504', response_flags: 'UT' })).toBe(1);
  });

  it('retries an attempt that passes its per-try timeout', async () => {
    const { get, hits } = await setup(1, (_n, _req, res, n) => {
      if (n === 1) setTimeout(() => res.end('slow'), 3000);
      else res.end('fast');
    }, routeWith({ timeoutMs: 5000, retries: { attempts: 2, perTryTimeoutMs: 300, retryOn: 'gateway-error', backoffBaseMs: 1 } }));
    const r = await get();
    expect(r.status).toBe(200);
    expect(r.body).toBe('fast');
    expect(hits()).toBe(2);
  });
});

describe('L7 client disconnects', () => {
  it('records DC and frees the upstream connection when the client leaves mid-request', async () => {
    const { h } = await setup(1, (_n, _req, res) => void setTimeout(() => res.end('late'), 300), {});
    const sock = net.connect(h.port, '127.0.0.1');
    await new Promise((r) => sock.once('connect', r));
    sock.write('GET /slow HTTP/1.1\r\nhost: x\r\n\r\n');
    await new Promise((r) => setTimeout(r, 50));
    sock.destroy();
    for (let i = 0; i < 50 && h.proxy.telemetry.count({ response_flags: 'DC' }) === 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(h.proxy.telemetry.count({ response_code: '0', response_flags: 'DC' })).toBe(1);
    await new Promise((r) => setTimeout(r, 20));
    expect(h.proxy.openSockets()).toEqual({ downstream: 0, upstream: 0 });
  });
});

describe('L7 circuit breaking and outlier detection', () => {
  it('rejects past max connections and pending requests with 503 UO', async () => {
    let concurrent = 0;
    let peak = 0;
    const { get, h } = await setup(1, (_n, _req, res) => {
      concurrent++;
      peak = Math.max(peak, concurrent);
      setTimeout(() => {
        concurrent--;
        res.end('ok');
      }, 400);
    }, { trafficPolicies: [{ host: 'fleet.default', connectionPool: { maxConnections: 1, maxPendingRequests: 1 } }] });
    const results = await Promise.all(Array.from({ length: 6 }, () => get()));
    const ok = results.filter((r) => r.status === 200).length;
    const overflow = results.filter((r) => r.status === 503 && r.headers['x-weft-error'] === 'WEFT_ERR_CIRCUIT_OPEN').length;
    expect(ok).toBe(2);
    expect(overflow).toBe(4);
    expect(peak).toBe(1);
    expect(h.proxy.telemetry.count({ response_code: '503', response_flags: 'UO' })).toBe(4);
  });

  it('rejects past max requests', async () => {
    const { get } = await setup(1, (_n, _req, res) => void setTimeout(() => res.end('ok'), 400), {
      trafficPolicies: [{ host: 'fleet.default', connectionPool: { maxRequests: 3 } }],
    });
    const results = await Promise.all(Array.from({ length: 5 }, () => get()));
    expect(results.filter((r) => r.status === 200).length).toBe(3);
    expect(results.filter((r) => r.status === 503).length).toBe(2);
  });

  it('ejects an endpoint after consecutive 5xx and sends traffic to the healthy one', async () => {
    const { get } = await setup(2, (name, _req, res) => {
      res.statusCode = name === 'up-0' ? 500 : 200;
      res.end(name);
    }, { trafficPolicies: [{ host: 'fleet.default', outlierDetection: { consecutive5xxErrors: 3, maxEjectionPercent: 50, baseEjectionTimeMs: 60_000 } }] });
    const first: number[] = [];
    for (let i = 0; i < 6; i++) first.push((await get()).status);
    expect(first.filter((s) => s === 500).length).toBe(3);
    const after: string[] = [];
    for (let i = 0; i < 20; i++) after.push((await get()).upstream);
    expect(after.every((u) => u === 'up-1')).toBe(true);
  });

  it('answers 503 UH when every endpoint is ejected or gone', async () => {
    const { get } = await setup(1, (_n, _req, res) => {
      res.statusCode = 502;
      res.end();
    }, { trafficPolicies: [{ host: 'fleet.default', outlierDetection: { consecutive5xxErrors: 2, maxEjectionPercent: 100 } }] });
    await get();
    await get();
    const r = await get();
    expect(r.status).toBe(503);
    expect(r.headers['x-weft-error']).toBe('WEFT_ERR_NO_HEALTHY_UPSTREAM');
  });
});
