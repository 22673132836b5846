// Request heads whose original fields filters removed or replaced leave as the client's own bytes with those lines cut
// out or rewritten in place (runtime/l7/http1-head-splice.ts): the exact bytes a raw-socket origin receives through a
// real L7 listener, with the first-party header-rewrite plugin and with a native filter; framing stays the parser's.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type net from 'node:net';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { PluginConfig, WeftConfig } from '../../runtime/config/config-schema.js';
import type { HeaderList } from '../../runtime/l7/header-list.js';
import type { L7Filter } from '../../runtime/l7/l7-filter.js';
import { createWasmPlugins } from '../../runtime/l7/wasm-filter.js';
import { ensurePluginBuilt } from '../../sdk/testing/index.js';
import { pluginConfig } from '../helpers/wasm-fixtures.js';
import { createTestHost } from '../helpers/wasm-host.js';
import { makeConfig, rawExchange, startProxy, startRawUpstream, type ProxyHarness } from './l7-harness.js';

/** Every byte the origin read, per connection, and the heads it framed (a content-length body is read past). */
const received: string[] = [];
let origin: net.Server;
let port = 0;
const cleanups: (() => Promise<void>)[] = [];

beforeAll(async () => {
  ({ server: origin, port } = await startRawUpstream('127.0.0.1', (request) => {
    received.push(request);
    return 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok';
  }));
});

afterAll(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  origin.close();
});

function config(plugins: PluginConfig[] = []): WeftConfig {
  return makeConfig({
    plugins,
    workloads: [{ name: 'api-1', addresses: ['127.0.0.1'], labels: { app: 'api' } }],
    services: [{
      name: 'api', addresses: ['10.96.0.81'], ports: [{ port: 80, targetPort: port, appProtocol: 'http' }], selector: { app: 'api' },
      ...(plugins.length === 0 ? {} : { annotations: { 'weft.dev/plugins': plugins.map((p) => p.name).join(', ') } }),
    }],
  });
}

async function withFilter(edit: (h: HeaderList) => void): Promise<ProxyHarness> {
  const filter: L7Filter = { name: 'edit', start: () => ({ onRequestHeaders: (h) => void edit(h) }) };
  const h = await startProxy(config(), 'api.default', 80, { extraFilters: () => [filter] });
  cleanups.push(() => h.close());
  return h;
}

/** The head the origin got with its traceparent line (a new span per hop) checked and taken out. */
function withoutTrace(head: string): string {
  const m = /\r\ntraceparent: 00-[0-9a-f]{32}-[0-9a-f]{16}-0[01](?=\r\n)/.exec(head);
  expect(m, head).not.toBeNull();
  return head.slice(0, m!.index) + head.slice(m!.index + m![0].length);
}

describe('spliced request heads', () => {
  it('header-rewrite (one set, one remove, one add): the origin gets the client bytes with x-internal cut and x-env rewritten in place', async () => {
    const wasm = await ensurePluginBuilt(fileURLToPath(new URL('../../plugins/header-rewrite', import.meta.url)));
    const rewrite = pluginConfig('header-rewrite', pathToFileURL(wasm).href, {
      config: { request: { remove: ['x-internal'], set: [{ name: 'x-env', value: 'prod' }], add: [{ name: 'x-added', value: '1' }] } },
    });
    const t = createTestHost();
    expect(await t.host.load([rewrite])).toEqual({ ok: true, plugins: ['header-rewrite'] });
    cleanups.push(() => Promise.resolve(t.host.close()));
    const c = config([rewrite]);
    const h = await startProxy(c, 'api.default', 80, { plugins: createWasmPlugins(t.host, () => c.plugins) });
    cleanups.push(() => h.close());

    const request = 'GET /api?q=1 HTTP/1.1\r\nHost: api\r\nUser-Agent: raw/1\r\nX-Internal:  secret \r\nX-Env: dev\r\nAccept: */*\r\n\r\n';
    const { text } = await rawExchange(h.port, request + request);
    expect(text).toBe('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'.repeat(2));
    const expected = 'GET /api?q=1 HTTP/1.1\r\nHost: api\r\nUser-Agent: raw/1\r\nX-Env: prod\r\nAccept: */*\r\nx-added: 1\r\n\r\n';
    expect(received.slice(-2).map(withoutTrace)).toEqual([expected, expected]);
  });

  it('a native filter removing the first, a middle and the last field and replacing one: exact bytes, body framed by its own line', async () => {
    const h = await withFilter((req) => {
      req.remove('x-first');
      req.remove('authorization');
      req.set('x-user', 'alice');
      req.remove('x-last');
      req.add('x-jwt-sub', 'alice');
    });
    const request = 'POST /items HTTP/1.1\r\nX-First: 1\r\nHost: api\r\nAUTHORIZATION: Bearer a.b.c\r\nx-user: mallory\r\nContent-Length: 5\r\nx-user: eve\r\nX-Last:\t\r\n\r\nhello';
    const { text } = await rawExchange(h.port, request);
    expect(text).toBe('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
    expect(withoutTrace(received.at(-1) ?? '')).toBe('POST /items HTTP/1.1\r\nHost: api\r\nx-user: alice\r\nContent-Length: 5\r\nx-jwt-sub: alice\r\n\r\nhello');
  });

  it('a filter removing content-length gets the head written anew, the framing still the parser\'s', async () => {
    const h = await withFilter((req) => {
      req.remove('content-length');
      req.remove('x-gone');
    });
    const { text } = await rawExchange(h.port, 'POST / HTTP/1.1\r\nHost: api\r\nContent-Length: 3\r\nX-Gone: 1\r\n\r\nabc');
    expect(text).toBe('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
    expect(withoutTrace(received.at(-1) ?? '')).toBe('POST / HTTP/1.1\r\nhost: api\r\ncontent-length: 3\r\n\r\nabc');
  });
});
