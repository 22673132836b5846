// authz's per-request allocations on an allowed request stay where they are: built with AssemblyScript's stub runtime
// (a bump allocator that frees only its last block) the heap pointer's advance across N requests is the bytes each
// request keeps. The release build's heap must also stay flat.
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { PluginEmulator } from '../../../sdk/testing/index.js';
import { buildWithStubRuntime, bytesKeptPerRequest, ensurePluginBuilt, memoryGrowth, withWarmedEmulator } from '../../../sdk/testing/index.js';

const PLUGIN_DIR = fileURLToPath(new URL('..', import.meta.url));

/** test/bench/first-party-plugin-bench.ts's configuration: a DENY on a path, an ALLOW on namespace, method and path. */
const CONFIG = {
  policies: [
    { action: 'DENY', rules: [{ to: [{ operation: { paths: ['/admin/*'] } }] }] },
    { action: 'ALLOW', rules: [{ from: [{ source: { namespaces: ['default'] } }], to: [{ operation: { methods: ['GET'], paths: ['/api/*'] } }] }] },
  ],
};

/**
 * Heap bytes each request may keep: none. The request's context is a deleted stream's, reused (ContextPool), and
 * `:path`, `:method` and `source.principal` are read into recycled host blocks (sized-blocks) given back before the
 * callback returns; a context, string, array or result object made per request would push the figure over it.
 */
const BYTES_PER_REQUEST_BUDGET = 0;

function request(emu: PluginEmulator): void {
  const s = emu.stream({ source: { address: '10.0.0.1', port: 1, principal: 'spiffe://cluster.local/ns/default/sa/a' } });
  const r = s.sendRequestHeaders({ ':method': 'GET', ':path': '/api/items?page=2', ':authority': 'svc', 'user-agent': 'wrk' }, true);
  if (r.action !== 'continue') throw new Error(`request not continued: ${r.action}`);
  s.sendResponseHeaders({ ':status': '200', 'content-type': 'text/plain' }, true);
  s.end();
}

/** Runs `check` on a fresh emulator of `wasm` warmed up with 200 allowed requests, and closes it. */
function warmed(wasm: string, check: (emu: PluginEmulator) => void): Promise<void> {
  return withWarmedEmulator({ wasm, config: CONFIG, logLevel: 'error' }, 200, request, check);
}

describe('authz steady-state allocations', () => {
  it(`allocates at most ${BYTES_PER_REQUEST_BUDGET} bytes per allowed request (stub runtime), and still denies`, async () => {
    const stub = await buildWithStubRuntime(PLUGIN_DIR);
    try {
      await warmed(stub.wasm, (emu) => {
        const other = emu.stream({ source: { address: '10.0.0.1', port: 1, principal: 'spiffe://cluster.local/ns/other/sa/a' } });
        expect(other.sendRequestHeaders({ ':method': 'GET', ':path': '/api/items', ':authority': 'svc' }, true).action).not.toBe('continue');
        expect(other.localResponse?.status).toBe(403);
        other.end();
        expect(bytesKeptPerRequest(emu, 2000, () => request(emu))).toBeLessThanOrEqual(BYTES_PER_REQUEST_BUDGET);
      });
    } finally {
      await stub.remove();
    }
  }, 120_000);

  it('the release build (minimal runtime, collected by the SDK) keeps its memory flat over many requests', async () => {
    await warmed(await ensurePluginBuilt(PLUGIN_DIR), (emu) => expect(memoryGrowth(emu, 20_000, () => request(emu))).toBe(0));
  });
});
