// Response heads with filters attached: the fields reach filters undecoded (a filter that reads none, or a few by name,
// makes no list of them), a head the filters left alone leaves byte for byte, and one whose original fields they
// removed or replaced leaves as the upstream's bytes with those lines cut out or rewritten in place
// (runtime/l7/http1-head-splice.ts) — unless an edit touches what the proxy drops or re-creates, and then it is written
// anew as before. Exact bytes a raw-socket client reads through a real L7 listener from a raw-socket upstream.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type net from 'node:net';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { PluginConfig, WeftConfig } from '../../runtime/config/config-schema.js';
import type { HeaderList } from '../../runtime/l7/header-list.js';
import type { L7Filter, L7FilterStream } from '../../runtime/l7/l7-filter.js';
import { createWasmPlugins } from '../../runtime/l7/wasm-filter.js';
import { ensurePluginBuilt } from '../../sdk/testing/index.js';
import { fixture, pluginConfig, wasmFileUrl } from '../helpers/wasm-fixtures.js';
import { createTestHost } from '../helpers/wasm-host.js';
import { makeConfig, rawExchange, startProxy, startRawUpstream, type ProxyHarness } from './l7-harness.js';

/** The response the upstream sends to every request (head and body). */
let answer = '';
let port = 0;
let upstream: net.Server;
const cleanups: (() => Promise<void>)[] = [];

beforeAll(async () => {
  ({ server: upstream, port } = await startRawUpstream('127.0.0.1', () => answer));
});

afterAll(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  upstream.close();
});

function config(plugins: PluginConfig[] = []): WeftConfig {
  return makeConfig({
    plugins,
    workloads: [{ name: 'web-1', addresses: ['127.0.0.1'], labels: { app: 'web' } }],
    services: [{
      name: 'web', addresses: ['10.96.0.82'], ports: [{ port: 80, targetPort: port, appProtocol: 'http' }], selector: { app: 'web' },
      ...(plugins.length === 0 ? {} : { annotations: { 'weft.dev/plugins': plugins.map((p) => p.name).join(', ') } }),
    }],
  });
}

/** The response lists filters were handed, in order (the native filter sees them before the plugins do: responses run the chain in reverse). */
const seen: HeaderList[] = [];

/** A native filter that hands each response list to `edit` (and records it); `stream` adds other callbacks. */
function nativeFilter(edit: () => ((h: HeaderList) => void | Promise<void>) | undefined, stream: Partial<L7FilterStream> = {}): L7Filter {
  return {
    name: 'edit-response',
    start: () => ({
      ...stream,
      onResponseHeaders: (_status, h) => {
        seen.push(h);
        const r = edit()?.(h);
        return r instanceof Promise ? r.then(() => undefined) : undefined;
      },
    }),
  };
}

let editResponse: ((h: HeaderList) => void | Promise<void>) | undefined;
let native: ProxyHarness;

beforeAll(async () => {
  native = await startProxy(config(), 'web.default', 80, { extraFilters: () => [nativeFilter(() => editResponse)] });
  cleanups.push(() => native.close());
});

/** What a client reads for one GET through `h`. */
async function get(h: ProxyHarness, request = 'GET / HTTP/1.1\r\nHost: web\r\n\r\n'): Promise<string> {
  return (await rawExchange(h.port, request)).text;
}

const ODD = 'HTTP/1.1 200 OK\r\nServer:  upstream \r\nX-Internal:\tsecret\r\nSet-Cookie: a=1\r\nX-Env: dev\r\nset-cookie:b=2\r\nContent-Length: 2\r\nX-Last: z \r\n\r\nok';

describe('spliced response heads (native filter)', () => {
  it('cuts the first and last field out, rewrites replaced ones in place with the upstream spelling, folds a repeated set, appends added ones', async () => {
    answer = ODD;
    editResponse = (h) => {
      h.remove('server');
      h.remove('x-last');
      h.set('x-env', 'prod');
      h.set('set-cookie', 'c=3');
      h.add('x-added', '1');
    };
    expect(await get(native)).toBe('HTTP/1.1 200 OK\r\nX-Internal:\tsecret\r\nSet-Cookie: c=3\r\nX-Env: prod\r\nContent-Length: 2\r\nx-added: 1\r\n\r\nok');
  });

  it('forwards a head the filter only read by name byte for byte, and never decodes its fields', async () => {
    answer = ODD;
    let read: (string | undefined)[] = [];
    editResponse = (h) => void (read = [h.get('x-env'), h.joined('set-cookie'), h.get('absent')]);
    seen.length = 0;
    expect(await get(native)).toBe(ODD);
    expect(read).toEqual(['dev', 'a=1, b=2', undefined]);
    expect(seen.map((h) => h.decoded)).toEqual([false]);
  });

  it('splices edits a paused filter makes once it resumes', async () => {
    answer = ODD;
    editResponse = async (h) => {
      await new Promise((r) => setImmediate(r));
      h.remove('x-internal');
    };
    expect(await get(native)).toBe('HTTP/1.1 200 OK\r\nServer:  upstream \r\nSet-Cookie: a=1\r\nX-Env: dev\r\nset-cookie:b=2\r\nContent-Length: 2\r\nX-Last: z \r\n\r\nok');
  });

  it('writes the head anew when an edit touches a framing or hop-by-hop field', async () => {
    answer = 'HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nX-Case: Mixed\r\nContent-Length: 2\r\n\r\nok';
    editResponse = (h) => {
      h.remove('content-length');
      h.remove('x-case');
    };
    expect(await get(native)).toBe('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
    editResponse = (h) => h.set('connection', 'close');
    expect(await get(native)).toBe('HTTP/1.1 200 OK\r\nx-case: Mixed\r\ncontent-length: 2\r\n\r\nok');
    editResponse = (h) => h.add('content-length', '2');
    expect(await get(native)).toBe('HTTP/1.1 200 OK\r\nx-case: Mixed\r\ncontent-length: 2\r\n\r\nok');
  });

  it('writes the head anew when the upstream\'s own head cannot leave as it came (hop-by-hop field, repeated length, chunked)', async () => {
    editResponse = (h) => h.remove('x-gone');
    answer = 'HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5\r\nX-Gone: 1\r\nX-Case: Mixed\r\nContent-Length: 2\r\n\r\nok';
    expect(await get(native)).toBe('HTTP/1.1 200 OK\r\nx-case: Mixed\r\ncontent-length: 2\r\n\r\nok');
    answer = 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Gone: 1\r\nX-Case: Mixed\r\nContent-Length: 2\r\n\r\nok';
    expect(await get(native)).toBe('HTTP/1.1 200 OK\r\nx-case: Mixed\r\ncontent-length: 2\r\n\r\nok');
    answer = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Gone: 1\r\nX-Case: Mixed\r\n\r\n2\r\nok\r\n0\r\n\r\n';
    expect(await get(native)).toBe('HTTP/1.1 200 OK\r\nx-case: Mixed\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n');
  });

  it('answers 502 for an obs-folded upstream head, filter or not', async () => {
    editResponse = (h) => h.remove('x-folded');
    answer = 'HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\nContent-Length: 2\r\n\r\nok';
    expect(await get(native)).toMatch(/^HTTP\/1\.1 502 /);
  });

  it('writes the head anew for an HTTP/1.0 client (the proxy adds its own connection field)', async () => {
    answer = ODD;
    editResponse = (h) => h.remove('x-internal');
    const text = await get(native, 'GET / HTTP/1.0\r\nHost: web\r\n\r\n');
    expect(text).toBe('HTTP/1.1 200 OK\r\nserver: upstream\r\nset-cookie: a=1\r\nx-env: dev\r\nset-cookie: b=2\r\nx-last: z\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok');
  });

  it('forwards an unedited head as it came to a filter that watches the body, which still sees every byte', async () => {
    const pieces: string[] = [];
    const h = await startProxy(config(), 'web.default', 80, {
      extraFilters: () => [nativeFilter(() => undefined, { onResponseBody: (chunk, end) => void pieces.push(`${chunk.toString()}${end ? '|end' : ''}`) })],
    });
    cleanups.push(() => h.close());
    answer = ODD;
    expect(await get(h)).toBe(ODD);
    expect(pieces.join('')).toBe('ok|end');
  });
});

describe('response heads through proxy-wasm plugins', () => {
  async function withPlugin(plugin: PluginConfig): Promise<ProxyHarness> {
    const t = createTestHost();
    expect(await t.host.load([plugin])).toEqual({ ok: true, plugins: [plugin.name] });
    cleanups.push(() => Promise.resolve(t.host.close()));
    const c = config([plugin]);
    const h = await startProxy(c, 'web.default', 80, { plugins: createWasmPlugins(t.host, () => c.plugins), extraFilters: () => [nativeFilter(() => undefined)] });
    cleanups.push(() => h.close());
    return h;
  }

  const built = (name: string): Promise<string> => ensurePluginBuilt(fileURLToPath(new URL(`../../plugins/${name}`, import.meta.url)));

  it('a plugin that reads no response field (no-op, fault-injection) leaves the head undecoded and byte for byte', async () => {
    const noop = await withPlugin(pluginConfig('noop', await wasmFileUrl(await fixture('noop'))));
    const faults = await withPlugin(pluginConfig('fault-injection', pathToFileURL(await built('fault-injection')).href, {
      config: { abort: { httpStatus: 503, percentage: 0 }, delay: { fixedDelay: '1s', percentage: 0 } },
    }));
    for (const h of [noop, faults]) {
      answer = ODD;
      seen.length = 0;
      expect(await get(h)).toBe(ODD);
      expect(seen.map((l) => l.decoded)).toEqual([false]);
    }
  });

  it('cors reads by name and adds its fields: the head leaves as it came with them appended, still undecoded', async () => {
    const h = await withPlugin(pluginConfig('cors', pathToFileURL(await built('cors')).href, {
      config: { allowOrigins: ['https://app.example.com'], exposeHeaders: ['x-a'] },
    }));
    answer = ODD;
    seen.length = 0;
    const text = await get(h, 'GET / HTTP/1.1\r\nHost: web\r\nOrigin: https://app.example.com\r\n\r\n');
    const head = ODD.slice(0, -4);
    expect(text.startsWith(head)).toBe(true);
    const added = text.slice(head.length, -6).split('\r\n').sort();
    expect(added).toEqual(['access-control-allow-origin: https://app.example.com', 'access-control-expose-headers: x-a', 'vary: Origin']);
    expect(text.endsWith('\r\n\r\nok')).toBe(true);
    expect(seen.map((l) => l.decoded)).toEqual([false]);
  });

  it('header-rewrite\'s response rules (remove, set, add) splice the upstream head', async () => {
    const h = await withPlugin(pluginConfig('header-rewrite', pathToFileURL(await built('header-rewrite')).href, {
      config: { response: { remove: ['x-internal'], set: [{ name: 'x-env', value: 'prod' }], add: [{ name: 'x-served-by', value: 'weft' }] } },
    }));
    answer = ODD;
    expect(await get(h)).toBe('HTTP/1.1 200 OK\r\nServer:  upstream \r\nSet-Cookie: a=1\r\nX-Env: prod\r\nset-cookie:b=2\r\nContent-Length: 2\r\nX-Last: z \r\nx-served-by: weft\r\n\r\nok');
  });
});
