// The L7 adapter of a Wasm chain: which hooks a stream has follows what its plugins export, so the exchange runs no
// filter work on a phase no plugin acts on.
import { afterEach, describe, expect, it } from 'vitest';
import { Cb, PRELUDE, pluginConfig, wasmFileUrl, wat } from '../../test/helpers/wasm-fixtures.js';
import { createTestHost, loadPlugin, records, type TestHost } from '../../test/helpers/wasm-host.js';
import { HeaderList } from './header-list.js';
import { hasResponseHeaderHooks, type BodyAccess, type FilterRequestInfo } from './l7-filter.js';
import { wasmChainFilter } from './wasm-filter.js';

const INFO: FilterRequestInfo = { method: 'GET', path: '/', authority: 'svc', protocol: 'HTTP/1.1', sourceAddress: '10.0.0.1', sourceIdentity: undefined, destinationService: undefined, requestId: 'r' };
const BODY: BodyAccess = {
  replaceRequestBody: () => undefined,
  replaceResponseBody: () => undefined,
  setRequestLine: () => undefined,
  clearRouteCache: () => undefined,
  setResponseStatus: () => undefined,
};

/** A plugin exporting on_context_create, on_request_headers and on_delete (each recorded), plus `extra` exports. */
async function plugin(extra: string[]): Promise<Uint8Array> {
  const more = extra.map((name) => {
    const params = name === 'proxy_on_done' || name === 'proxy_on_log' ? '(param i32)' : name.endsWith('_trailers') ? '(param i32 i32)' : '(param i32 i32 i32)';
    const result = name === 'proxy_on_log' ? '' : name === 'proxy_on_done' ? '(result i32) (i32.const 1)' : '(result i32) (i32.const 0)';
    return `(func (export "${name}") ${params} ${result})`;
  });
  return wat(`(module ${PRELUDE}
    (func (export "proxy_abi_version_0_2_1"))
    (func (export "proxy_on_context_create") (param i32 i32) (call $record (i32.const ${Cb.contextCreate}) (local.get 0) (i32.const 0) (i32.const 0)))
    (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
      (call $record (i32.const ${Cb.requestHeaders}) (local.get 0) (local.get 1) (i32.const 0)) (i32.const 0))
    (func (export "proxy_on_delete") (param i32) (call $record (i32.const ${Cb.delete}) (local.get 0) (i32.const 0) (i32.const 0)))
    ${more.join('\n')})`);
}

let t: TestHost | undefined;
afterEach(() => t?.host.close());

describe('wasmChainFilter', () => {
  it('gives a chain whose plugins act only on the request no response hook, and still ends each context', async () => {
    t = createTestHost();
    const vm = await loadPlugin(t, 'request-only', await plugin([]));
    const filter = wasmChainFilter(t.host, ['request-only']);
    expect(filter.bufferRequestBody).toBe(false);
    expect(filter.bufferResponseBody).toBe(false);
    const s = filter.start(INFO, BODY)!;
    for (const hook of ['onResponseHeaders', 'onRequestBody', 'onResponseBody', 'onRequestTrailers', 'onResponseTrailers'] as const) expect(Reflect.get(s, hook), hook).toBeUndefined();
    // The HTTP/1 exchange then leaves the response head undecoded and runs no filter hook on it.
    expect(hasResponseHeaderHooks([s])).toBe(false);
    expect(s.onRequestHeaders!(new HeaderList(['host', 'svc', 'accept', '*/*']), true)).toBeUndefined();
    s.onDone!(200, '-');
    expect(records(vm)).toEqual([
      [Cb.contextCreate, 1, 0, 0],
      [Cb.contextCreate, 2, 0, 0],
      [Cb.requestHeaders, 2, 5, 0],
      [Cb.delete, 2, 0, 0],
    ]);
  });

  it.each([['proxy_on_response_headers'], ['proxy_on_response_body'], ['proxy_on_response_trailers'], ['proxy_on_done'], ['proxy_on_log']])(
    'gives the response hook to a chain with a plugin exporting %s (it may read the response headers)',
    async (callback) => {
      t = createTestHost();
      const loaded = await t.host.load([pluginConfig('quiet', await wasmFileUrl(await plugin([]))), pluginConfig('reader', await wasmFileUrl(await plugin([callback])))]);
      expect(loaded.ok).toBe(true);
      const s = wasmChainFilter(t.host, ['quiet', 'reader']).start(INFO, BODY)!;
      expect(Reflect.get(s, 'onResponseHeaders')).toBeTypeOf('function');
      expect(hasResponseHeaderHooks([s])).toBe(true);
      expect(s.onRequestHeaders!(new HeaderList(['host', 'svc']), true)).toBeUndefined();
      const response = new HeaderList(['content-length', '0']);
      expect(s.onResponseHeaders!(200, response, true)).toBeUndefined();
      s.onDone!(200, '-');
    },
  );
});
