// jwt-authn's per-request allocations on a cache hit (a client repeating its token) stay where they are: built with
// AssemblyScript's stub runtime (a bump allocator that frees only its last block) the heap pointer's advance across N
// requests is the bytes each request keeps. The release build's heap must also stay flat (no leak through the cache).
import { generateKeyPairSync, sign } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PluginEmulator } from '../../../sdk/testing/index.js';
import { buildWithStubRuntime, bytesKeptPerRequest, ensurePluginBuilt, memoryGrowth, withWarmedEmulator } from '../../../sdk/testing/index.js';

const PLUGIN_DIR = fileURLToPath(new URL('..', import.meta.url));

const b64 = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url');
const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const input = `${b64({ alg: 'ES256', kid: 'e' })}.${b64({ iss: 'i', sub: 'alice', exp: Math.floor(Date.now() / 1000) + 3600 })}`;
const TOKEN = `${input}.${sign('sha256', Buffer.from(input), { key: ec.privateKey, dsaEncoding: 'ieee-p1363' }).toString('base64url')}`;

/** test/bench/plugin-cost.ts's configuration: one ES256 key, one claim copied to a header. */
const CONFIG = { providers: [{ issuer: 'i', jwks: { keys: [{ ...ec.publicKey.export({ format: 'jwk' }), kid: 'e' }] }, claimToHeaders: [{ claim: 'sub', header: 'x-user' }] }] };

/**
 * Heap bytes each request may keep: none. The request's context is a deleted stream's, reused (ContextPool), and the
 * host's block holding the Authorization value is recycled (sized-blocks) before anything else is allocated; a context,
 * string, array or result object made per request would push the figure over it.
 */
const BYTES_PER_REQUEST_BUDGET = 0;

let stub: Awaited<ReturnType<typeof buildWithStubRuntime>>;

beforeAll(async () => {
  stub = await buildWithStubRuntime(PLUGIN_DIR);
}, 120_000);

afterAll(async () => {
  await stub.remove();
});

function request(emu: PluginEmulator): void {
  const s = emu.stream({ source: { address: '10.0.0.1', port: 1 } });
  const r = s.sendRequestHeaders({ ':method': 'GET', ':path': '/items', ':authority': 'svc', 'user-agent': 'wrk', authorization: `Bearer ${TOKEN}` }, true);
  if (r.action !== 'continue') throw new Error(`request not continued: ${r.action}`);
  s.sendResponseHeaders({ ':status': '200', 'content-type': 'text/plain' }, true);
  s.end();
}

describe('jwt-authn steady-state allocations', () => {
  it(`allocates at most ${BYTES_PER_REQUEST_BUDGET} bytes per request with a cached token (stub runtime)`, async () => {
    await withWarmedEmulator({ wasm: stub.wasm, config: CONFIG, logLevel: 'error' }, 200, request, (emu) => {
      const s = emu.stream({});
      s.sendRequestHeaders({ ':method': 'GET', ':path': '/', ':authority': 'svc', authorization: `Bearer ${TOKEN}` }, true);
      expect(s.requestHeader('x-user')).toBe('alice');
      expect(s.requestHeader('authorization')).toBeUndefined();
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
