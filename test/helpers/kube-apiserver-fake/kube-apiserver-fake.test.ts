// The fake API server's own contract: auth, selectors, paging at one resourceVersion, watch replay/bookmarks/410, faults.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent, request } from 'undici';
import { KubeApiServerFake } from './kube-apiserver-fake.js';
import { createTestPki, type TestPki } from './test-pki.js';
import { matchesLabels, parseLabelSelector } from './label-selector.js';

let pki: TestPki;
let fake: KubeApiServerFake;
let agent: Agent;
const TOKEN = 'token-a';

async function get(path: string, token: string | null = TOKEN): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  const res = await request(fake.url + path, { dispatcher: agent, headers: token === null ? {} : { authorization: `Bearer ${token}` } });
  return { status: res.statusCode, headers: res.headers, body: await res.body.text() };
}

/** Reads a watch stream to its end (the server closes it), returning its lines. */
async function watchLines(path: string, until?: (lines: string[]) => boolean): Promise<{ lines: string[]; rest: string }> {
  const ac = new AbortController();
  const res = await request(fake.url + path, { dispatcher: agent, headers: { authorization: `Bearer ${TOKEN}` }, signal: ac.signal });
  expect(res.statusCode).toBe(200);
  let text = '';
  try {
    for await (const chunk of res.body) {
      text += (chunk as Buffer).toString();
      const lines = text.split('\n').filter((l) => l !== '');
      if (until?.(text.endsWith('\n') ? lines : lines.slice(0, -1)) === true) ac.abort();
    }
  } catch {
    // aborted by us or cut by the server
  }
  const complete = text.slice(0, text.lastIndexOf('\n') + 1);
  return { lines: complete.split('\n').filter((l) => l !== ''), rest: text.slice(complete.length) };
}

const pod = (name: string, node: string, labels: Record<string, string> = {}) => ({ metadata: { name, namespace: 'shop', labels }, spec: { nodeName: node }, status: { phase: 'Running' } });

beforeAll(async () => {
  pki = createTestPki();
  fake = await new KubeApiServerFake({ tls: { cert: pki.serverCert, key: pki.serverKey, clientCa: pki.ca }, tokens: [TOKEN], bookmarkIntervalMs: 100 }).start();
  agent = new Agent({ connect: { ca: pki.ca } });
  fake.store.create('namespaces', { metadata: { name: 'shop' } });
  fake.store.create('pods', pod('a', 'node-1', { app: 'web', tier: 'front' }));
  fake.store.create('pods', pod('b', 'node-2', { app: 'web' }));
  fake.store.create('pods', pod('c', 'node-1', { app: 'db' }));
});

afterAll(async () => {
  await agent.close();
  await fake.close();
});

describe('label selectors', () => {
  it('parses every operator and rejects garbage', () => {
    const r = parseLabelSelector('app=web,tier!=back,env in (a, b),zone notin (x),has,!gone');
    expect(matchesLabels(r, { app: 'web', env: 'a', has: '' })).toBe(true);
    expect(matchesLabels(r, { app: 'web', env: 'c', has: '' })).toBe(false);
    expect(matchesLabels(r, { app: 'web', env: 'a', has: '', gone: '1' })).toBe(false);
    expect(() => parseLabelSelector('app=(x')).toThrow();
  });
});

describe('authentication', () => {
  it('answers 401 without a valid token, and accepts a rotated one only after rotation', async () => {
    expect((await get('/api/v1/pods', null)).status).toBe(401);
    expect(JSON.parse((await get('/api/v1/pods', 'nope')).body)).toMatchObject({ kind: 'Status', code: 401, reason: 'Unauthorized' });
    fake.setTokens(['token-b', TOKEN]);
    expect((await get('/api/v1/pods', 'token-b')).status).toBe(200);
    fake.setTokens([TOKEN]);
    expect((await get('/api/v1/pods', 'token-b')).status).toBe(401);
  });

  it('accepts a client certificate signed by the cluster CA', async () => {
    const { readFileSync } = await import('node:fs');
    const certAgent = new Agent({ connect: { ca: pki.ca, cert: readFileSync(pki.clientCertFile), key: readFileSync(pki.clientKeyFile) } });
    const res = await request(fake.url + '/api/v1/namespaces', { dispatcher: certAgent });
    expect(res.statusCode).toBe(200);
    await res.body.dump();
    await certAgent.close();
  });
});

describe('LIST', () => {
  it('filters by label and field selectors, and rejects an unsupported field with 400', async () => {
    const names = async (q: string) => (JSON.parse((await get(`/api/v1/pods?${q}`)).body) as { items: { metadata: { name: string } }[] }).items.map((i) => i.metadata.name);
    expect(await names('labelSelector=app%3Dweb')).toEqual(['a', 'b']);
    expect(await names('fieldSelector=spec.nodeName%3Dnode-1')).toEqual(['a', 'c']);
    expect(await names('fieldSelector=spec.nodeName%3Dnode-1&labelSelector=app%21%3Ddb')).toEqual(['a']);
    expect(await names('fieldSelector=metadata.name%3Db')).toEqual(['b']);
    const bad = await get('/api/v1/pods?fieldSelector=spec.foo%3Dx');
    expect(bad.status).toBe(400);
    expect(JSON.parse(bad.body)).toMatchObject({ reason: 'BadRequest', message: 'field label not supported: spec.foo' });
    expect((await get('/api/v1/namespaces/shop/pods')).status).toBe(200);
    expect((await get('/api/v1/namespaces/other/pods')).body).toContain('"items":[]');
  });

  it('answers 404 for a CRD that is not installed, and serves it once installed', async () => {
    expect((await get('/apis/extensions.istio.io/v1alpha1/wasmplugins')).status).toBe(404);
    fake.installCrd('wasmplugins');
    const res = await get('/apis/extensions.istio.io/v1alpha1/wasmplugins');
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body)).toMatchObject({ kind: 'WasmPluginList', apiVersion: 'extensions.istio.io/v1alpha1' });
  });

  it('pages with limit/continue at one resourceVersion, even while objects change', async () => {
    const first = JSON.parse((await get('/api/v1/pods?limit=2')).body) as { metadata: { resourceVersion: string; continue: string; remainingItemCount: number }; items: unknown[] };
    expect(first.items).toHaveLength(2);
    expect(first.metadata.remainingItemCount).toBe(1);
    fake.store.create('pods', pod('d', 'node-3'));
    const second = JSON.parse((await get(`/api/v1/pods?limit=2&continue=${first.metadata.continue}`)).body) as { metadata: { resourceVersion: string; continue?: string }; items: { metadata: { name: string } }[] };
    expect(second.metadata.resourceVersion).toBe(first.metadata.resourceVersion);
    expect(second.items.map((i) => i.metadata.name)).toEqual(['c']);
    expect(second.metadata.continue).toBeUndefined();
    fake.store.delete('pods', 'shop', 'd');
  });

  it('answers 410 Expired for a continue token past compaction', async () => {
    const first = JSON.parse((await get('/api/v1/pods?limit=1')).body) as { metadata: { continue: string } };
    fake.store.update('pods', pod('a', 'node-1', { app: 'web', tier: 'front', v: '2' }));
    fake.store.compact(fake.store.resourceVersion);
    const res = await get(`/api/v1/pods?limit=1&continue=${first.metadata.continue}`);
    expect(res.status).toBe(410);
    expect(JSON.parse(res.body)).toMatchObject({ code: 410, reason: 'Expired' });
  });
});

describe('WATCH', () => {
  it('replays after a resourceVersion, one JSON event per line, and sends DELETED when an object leaves the selector', async () => {
    const from = fake.store.resourceVersion;
    fake.store.update('pods', pod('b', 'node-2', { app: 'web', v: '3' }));
    fake.store.update('pods', pod('b', 'node-2', { app: 'other' }));
    fake.store.update('pods', pod('c', 'node-1', { app: 'web' }));
    const { lines } = await watchLines(`/api/v1/pods?watch=1&resourceVersion=${from}&labelSelector=app%3Dweb&timeoutSeconds=1`);
    const events = lines.map((l) => JSON.parse(l) as { type: string; object: { metadata: { name: string; resourceVersion: string } } });
    expect(events.map((e) => `${e.type} ${e.object.metadata.name}`)).toEqual(['MODIFIED b', 'DELETED b', 'ADDED c']);
    const rvs = events.map((e) => Number(e.object.metadata.resourceVersion));
    expect(rvs).toEqual([...rvs].sort((x, y) => x - y));
    expect(rvs[0]).toBeGreaterThan(from);
  });

  it('starts with synthetic ADDEDs for resourceVersion 0, sends BOOKMARKs, and ends at timeoutSeconds', async () => {
    const { lines } = await watchLines('/api/v1/pods?watch=1&resourceVersion=0&allowWatchBookmarks=true&timeoutSeconds=1&fieldSelector=spec.nodeName%3Dnode-1');
    const events = lines.map((l) => JSON.parse(l) as { type: string; object: { kind: string; metadata: { name?: string; resourceVersion: string } } });
    expect(events.filter((e) => e.type === 'ADDED').map((e) => e.object.metadata.name)).toEqual(['a', 'c']);
    const bookmarks = events.filter((e) => e.type === 'BOOKMARK');
    expect(bookmarks.length).toBeGreaterThanOrEqual(2);
    expect(bookmarks[0]?.object).toEqual({ kind: 'Pod', apiVersion: 'v1', metadata: { resourceVersion: String(fake.store.resourceVersion) } });
  });

  it('answers a too-old resourceVersion with 200 and an ERROR event carrying 410 Expired', async () => {
    const { lines } = await watchLines('/api/v1/pods?watch=1&resourceVersion=2');
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0] ?? '')).toMatchObject({ type: 'ERROR', object: { kind: 'Status', code: 410, reason: 'Expired' } });
  });
});

describe('faults', () => {
  it('answers 429 with Retry-After, 403 and 500 as Status objects, once each', async () => {
    fake.inject({ fault: { kind: 'status', code: 429, retryAfterSeconds: 3 }, verb: 'list' });
    const throttled = await get('/api/v1/services');
    expect(throttled.status).toBe(429);
    expect(throttled.headers['retry-after']).toBe('3');
    fake.inject({ fault: { kind: 'status', code: 403 }, resource: 'services' });
    expect(JSON.parse((await get('/api/v1/services')).body)).toMatchObject({ code: 403, reason: 'Forbidden' });
    fake.inject({ fault: { kind: 'status', code: 500 } });
    expect((await get('/api/v1/services')).status).toBe(500);
    expect((await get('/api/v1/services')).status).toBe(200);
  });

  it('cuts a watch in the middle of a line', async () => {
    fake.inject({ fault: { kind: 'cutMidLine', afterEvents: 1 }, verb: 'watch' });
    const { lines, rest } = await watchLines('/api/v1/pods?watch=1&resourceVersion=0');
    expect(lines).toHaveLength(1);
    expect(rest.length).toBeGreaterThan(0);
    expect(() => JSON.parse(rest) as unknown).toThrow();
  });

  it('goes silent on a half-open watch: the socket stays open, nothing more arrives', async () => {
    fake.inject({ fault: { kind: 'halfOpen', afterEvents: 1 }, verb: 'watch' });
    const started = fake.openWatches;
    const seen: string[] = [];
    const ac = new AbortController();
    const res = await request(fake.url + '/api/v1/pods?watch=1&resourceVersion=0&allowWatchBookmarks=true', { dispatcher: agent, headers: { authorization: `Bearer ${TOKEN}` }, signal: ac.signal });
    const reading = (async () => {
      try {
        for await (const chunk of res.body) seen.push((chunk as Buffer).toString());
      } catch {
        // aborted
      }
    })();
    fake.store.update('pods', pod('a', 'node-1', { app: 'web', v: 'after' }));
    await new Promise((r) => setTimeout(r, 300));
    expect(fake.openWatches).toBe(started + 1);
    expect(seen.join('').split('\n').filter((l) => l !== '')).toHaveLength(1);
    ac.abort();
    await reading;
  });
});
