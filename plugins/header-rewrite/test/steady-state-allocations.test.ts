// header-rewrite's per-request allocations stay where they are: built with AssemblyScript's stub runtime (a bump
// allocator that never frees) every allocation moves the heap pointer for good, so the pointer's advance across N
// requests is exactly the bytes allocated per request. The release build's heap must also stay flat (no leak).
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PluginEmulator } from '../../../sdk/testing/index.js';
import { buildWithStubRuntime, bytesKeptPerRequest, ensurePluginBuilt, memoryGrowth, withWarmedEmulator } from '../../../sdk/testing/index.js';

const PLUGIN_DIR = fileURLToPath(new URL('..', import.meta.url));

/** The benchmark's realistic configuration: one set and one remove on the request, one add on the response. */
const CONFIG = {
  request: { set: [{ name: 'x-wasm-filter', value: 'on' }], remove: ['x-internal'] },
  response: { add: [{ name: 'x-served-by', value: 'weft-wasm' }] },
};

/**
 * Heap bytes each request may take, measured when the SDK was made allocation-lean: the request's context object
 * (16-byte block header, 16-byte object header, its id, root and captured-values fields). An added per-request
 * allocation (a string, an array, a result object) pushes the measured figure over it.
 */
const BYTES_PER_REQUEST_BUDGET = 48;

let stub: Awaited<ReturnType<typeof buildWithStubRuntime>>;

beforeAll(async () => {
  stub = await buildWithStubRuntime(PLUGIN_DIR);
}, 120_000);

afterAll(async () => {
  await stub.remove();
});

function request(emu: PluginEmulator): void {
  const s = emu.stream({ source: { address: '10.0.0.1', port: 1 } });
  s.sendRequestHeaders({ ':method': 'GET', ':path': '/items', ':authority': 'svc', 'user-agent': 'wrk', 'x-internal': '1' }, true);
  s.sendResponseHeaders({ ':status': '200', 'content-type': 'text/plain' }, true);
  s.end();
}

describe('header-rewrite steady-state allocations', () => {
  it(`allocates at most ${BYTES_PER_REQUEST_BUDGET} bytes per request (stub runtime: the heap pointer's advance)`, async () => {
    await withWarmedEmulator({ wasm: stub.wasm, config: CONFIG, logLevel: 'error' }, 200, request, (emu) => {
      const s = emu.stream({});
      s.sendRequestHeaders({ ':method': 'GET', ':path': '/', ':authority': 'svc', 'x-internal': '1' }, true);
      expect(s.requestHeader('x-wasm-filter')).toBe('on');
      expect(s.requestHeader('x-internal')).toBeUndefined();
      s.end();
      expect(bytesKeptPerRequest(emu, 2000, () => request(emu))).toBeLessThanOrEqual(BYTES_PER_REQUEST_BUDGET);
    });
  });

  it('the release build (minimal runtime, collected by the SDK) keeps its memory flat over many requests', async () => {
    await withWarmedEmulator({ wasm: await ensurePluginBuilt(PLUGIN_DIR), config: CONFIG, logLevel: 'error' }, 2000, request, (emu) => {
      expect(memoryGrowth(emu, 20_000, () => request(emu))).toBe(0);
    });
  });
});
