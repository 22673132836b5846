// Routing through weft's L7 path against a fleet of real upstreams: path/header/method matches, weighted subset splits, rewrites, header operations, consistent hashing and the other load balancers, L7 authorization.
import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { fleetConfig, rawExchange, startFleet, startProxy } from './l7-harness.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const seenBy: { name: string; host: string; url: string; body: string }[] = [];

async function setup(n: number, labelsOf: (i: number) => Record<string, string>, extra: Record<string, unknown>) {
  const fleet = await startFleet(n, (name, req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => seenBy.push({ name, host: String(req.headers.host), url: req.url ?? '', body }));
    res.setHeader('x-upstream', name);
    res.setHeader('x-seen-url', req.url ?? '');
    res.setHeader('x-seen-headers', JSON.stringify(req.headers));
    res.end(name);
  });
  cleanups.push(() => fleet.close());
  const h = await startProxy(fleetConfig(n, fleet.port, labelsOf, extra), 'fleet.default', 80);
  cleanups.push(() => h.close());
  const get = async (path: string, headers: Record<string, string> = {}, method = 'GET') => {
    const res = await request(`http://127.0.0.1:${h.port}${path}`, { headers, method });
    const body = await res.body.text();
    return { status: res.statusCode, upstream: String(res.headers['x-upstream'] ?? ''), url: String(res.headers['x-seen-url'] ?? ''), headers: res.headers, body };
  };
  return { fleet, h, get };
}

describe('L7 routing', () => {
  it('matches routes by path, header and method, first match wins, and answers 404 NR when nothing matches', async () => {
    const { get, h } = await setup(3, (i) => ({ version: `v${i}` }), {
      routes: [
        {
          host: 'fleet.default',
          http: [
            { name: 'admin', match: [{ path: { exact: '/admin' }, method: 'POST' }], backends: [{ labels: { version: 'v2' } }] },
            { name: 'beta', match: [{ headers: { 'x-beta': { exact: '1' } } }], backends: [{ labels: { version: 'v1' } }] },
            { name: 'api', match: [{ path: { regex: '/api/[0-9]+' } }, { path: { prefix: '/v0/' } }], backends: [{ labels: { version: 'v0' } }] },
          ],
        },
      ],
    });
    expect((await get('/admin', {}, 'POST')).upstream).toBe('up-2');
    expect((await get('/api/42')).upstream).toBe('up-0');
    expect((await get('/v0/thing')).upstream).toBe('up-0');
    expect((await get('/anything', { 'x-beta': '1' })).upstream).toBe('up-1');
    const miss = await get('/api/x');
    expect(miss.status).toBe(404);
    expect(miss.headers['x-weft-error']).toBe('WEFT_ERR_NO_ROUTE');
    expect(h.proxy.telemetry.count({ response_code: '404', response_flags: 'NR' })).toBe(1);
  });

  it('splits traffic across label subsets by weight', async () => {
    const { get } = await setup(2, (i) => ({ version: i === 0 ? 'v1' : 'v2' }), {
      routes: [{ host: 'fleet.default', http: [{ backends: [{ labels: { version: 'v1' }, weight: 80 }, { labels: { version: 'v2' }, weight: 20 }] }] }],
    });
    const counts: Record<string, number> = {};
    for (let i = 0; i < 400; i++) {
      const r = await get('/');
      counts[r.upstream] = (counts[r.upstream] ?? 0) + 1;
    }
    // 80/20 over 400 requests: a binomial with sd 8, so ±40 is over 4 sd.
    expect(counts['up-0']).toBeGreaterThan(280);
    expect(counts['up-0']).toBeLessThan(360);
    expect((counts['up-0'] ?? 0) + (counts['up-1'] ?? 0)).toBe(400);
  });

  it('rewrites prefix and authority and applies request/response header operations', async () => {
    const { get } = await setup(1, () => ({}), {
      routes: [
        {
          host: 'fleet.default',
          http: [
            {
              match: [{ path: { prefix: '/old/' } }],
              rewrite: { uri: '/new/', authority: 'rewritten.example' },
              headers: { request: { set: { 'x-set': 'a' }, add: { 'x-added': 'b' }, remove: ['x-secret'] }, response: { set: { 'x-resp': 'c' }, remove: ['x-seen-headers'] } },
            },
          ],
        },
      ],
    });
    const r = await get('/old/path?x=1', { 'x-secret': 'no', 'x-set': 'original' });
    expect(r.url).toBe('/new/path?x=1');
    expect(r.headers['x-resp']).toBe('c');
    expect(r.headers['x-seen-headers']).toBeUndefined();
  });

  it('sends the same hash key to the same endpoint, and moves few keys when an endpoint goes away', async () => {
    const lb = { kind: 'CONSISTENT_HASH', hashOn: { header: 'x-user' } };
    const { get, h } = await setup(4, () => ({}), { trafficPolicies: [{ host: 'fleet.default', loadBalancer: lb }] });
    const first: Record<string, string> = {};
    for (let u = 0; u < 60; u++) first[`user-${u}`] = (await get('/', { 'x-user': `user-${u}` })).upstream;
    for (let u = 0; u < 60; u++) expect((await get('/', { 'x-user': `user-${u}` })).upstream).toBe(first[`user-${u}`]);
    expect(new Set(Object.values(first)).size).toBeGreaterThan(1);
    // Drop up-3 from the service: only keys that lived on up-3 may move.
    const cfg = h.state.current.config;
    h.state.update({ ...cfg, workloads: cfg.workloads.filter((w) => w.name !== 'up-3') });
    let moved = 0;
    for (let u = 0; u < 60; u++) {
      const now = (await get('/', { 'x-user': `user-${u}` })).upstream;
      if (first[`user-${u}`] !== 'up-3') expect(now).toBe(first[`user-${u}`]);
      else moved++;
      expect(now).not.toBe('up-3');
    }
    expect(moved).toBeLessThan(60);
  });

  it('hashes on a cookie and on the source IP', async () => {
    const { get } = await setup(3, () => ({}), { trafficPolicies: [{ host: 'fleet.default', loadBalancer: { kind: 'CONSISTENT_HASH', hashOn: { cookie: 'session' } } }] });
    const a = (await get('/', { cookie: 'theme=dark; session=abc123' })).upstream;
    for (let i = 0; i < 10; i++) expect((await get('/', { cookie: `session=abc123; n=${i}` })).upstream).toBe(a);
    const src = await setup(3, () => ({}), { trafficPolicies: [{ host: 'fleet.default', loadBalancer: { kind: 'CONSISTENT_HASH', hashOn: { sourceIp: true } } }] });
    const b = (await src.get('/')).upstream;
    for (let i = 0; i < 10; i++) expect((await src.get('/')).upstream).toBe(b);
  });

  it('spreads round robin evenly and least-request/random over all endpoints', async () => {
    const rr = await setup(3, () => ({}), {});
    const seen: string[] = [];
    for (let i = 0; i < 9; i++) seen.push((await rr.get('/')).upstream);
    expect(seen.filter((s) => s === 'up-0').length).toBe(3);
    expect(seen.filter((s) => s === 'up-2').length).toBe(3);
    for (const kind of ['LEAST_REQUEST', 'RANDOM']) {
      const s = await setup(3, () => ({}), { trafficPolicies: [{ host: 'fleet.default', loadBalancer: { kind } }] });
      const hit = new Set<string>();
      for (let i = 0; i < 60; i++) hit.add((await s.get('/')).upstream);
      expect(hit.size).toBe(3);
    }
  });

  it('mirrors requests to a shadow subset without affecting the answer', async () => {
    seenBy.length = 0;
    const { get, h } = await setup(2, (i) => ({ version: `v${i + 1}` }), {
      routes: [{ host: 'fleet.default', http: [{ backends: [{ labels: { version: 'v1' } }], mirror: { labels: { version: 'v2' }, percent: 100 } }] }],
    });
    for (let i = 0; i < 5; i++) {
      const r = await get(`/m${i}`, { host: 'fleet.default' });
      expect(r.upstream).toBe('up-0');
    }
    const res = await request(`http://127.0.0.1:${h.port}/post`, { method: 'POST', body: 'payload' });
    await res.body.text();
    for (let i = 0; i < 100 && seenBy.filter((s) => s.name === 'up-1').length < 6; i++) await new Promise((r) => setTimeout(r, 10));
    const shadows = seenBy.filter((s) => s.name === 'up-1');
    expect(shadows.map((s) => s.url).sort()).toEqual(['/m0', '/m1', '/m2', '/m3', '/m4', '/post']);
    expect(shadows[0]!.host).toBe('fleet.default-shadow');
    expect(shadows.find((s) => s.url === '/post')?.body).toBe('payload');
  });

  it('answers CONNECT 405 unless a route allows tunnelling, then tunnels to the picked endpoint through authorization', async () => {
    const plain = await setup(1, () => ({}), {});
    const refused = await rawExchange(plain.h.port, 'CONNECT fleet.default:80 HTTP/1.1\r\nhost: fleet.default:80\r\n\r\nGET /inside HTTP/1.1\r\nhost: x\r\n\r\n', { untilClose: true, idleMs: 2000 });
    expect(refused.text).toMatch(/^HTTP\/1\.1 405 Method Not Allowed\r\n/);
    expect(refused.text).toContain('x-weft-error: WEFT_ERR_METHOD_NOT_ALLOWED');
    expect(refused.text).toContain('allow: ');
    expect(refused.closed).toBe(true);
    expect(seenBy.some((s) => s.url === '/inside')).toBe(false);

    const routes = [{ host: 'fleet.default', http: [{ name: 'tunnel', match: [{ method: 'CONNECT' }], connect: true }, { name: 'rest' }] }];
    const { h } = await setup(1, () => ({}), { routes });
    const { text } = await rawExchange(h.port, 'CONNECT fleet.default:80 HTTP/1.1\r\nhost: fleet.default:80\r\n\r\nGET /inside HTTP/1.1\r\nhost: x\r\n\r\n');
    expect(text).toMatch(/^HTTP\/1\.1 200 Connection Established\r\n\r\nHTTP\/1\.1 200 OK/);
    expect(text).toContain('x-seen-url: /inside');

    const denied = await setup(1, () => ({}), {
      routes,
      policies: [{ name: 'no-tunnels', namespace: 'default', action: 'DENY', targetRef: { kind: 'Service', name: 'fleet' }, rules: [{ to: [{ operation: { methods: ['CONNECT'] } }] }] }],
    });
    const blocked = await rawExchange(denied.h.port, 'CONNECT fleet.default:80 HTTP/1.1\r\nhost: fleet.default:80\r\n\r\nGET /denied-inside HTTP/1.1\r\nhost: x\r\n\r\n', { untilClose: true, idleMs: 2000 });
    expect(blocked.text).toMatch(/^HTTP\/1\.1 403 /);
    expect(blocked.text).toContain('connection: close');
    expect(seenBy.some((s) => s.url === '/denied-inside')).toBe(false);
  });

  it('enforces L7 authorization policies targeting the service (403 RBAC, flag UAEX)', async () => {
    const { get, h } = await setup(1, () => ({}), {
      policies: [
        { name: 'deny-admin', namespace: 'default', action: 'DENY', targetRef: { kind: 'Service', name: 'fleet' }, rules: [{ to: [{ operation: { paths: ['/admin*'] } }] }] },
        { name: 'allow-get', namespace: 'default', action: 'ALLOW', targetRef: { kind: 'Service', name: 'fleet' }, rules: [{ to: [{ operation: { methods: ['GET', 'HEAD'] } }] }] },
      ],
    });
    expect((await get('/public')).status).toBe(200);
    const admin = await get('/admin/panel');
    expect(admin.status).toBe(403);
    expect(admin.body).toBe('RBAC: access denied\n');
    expect(admin.headers['x-weft-error']).toBe('WEFT_ERR_POLICY_DENIED');
    expect((await get('/public', {}, 'DELETE')).status).toBe(403);
    expect(h.proxy.telemetry.count({ response_code: '403', response_flags: 'UAEX' })).toBe(2);
  });
});
