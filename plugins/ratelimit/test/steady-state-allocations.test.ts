// ratelimit's per-request allocations on the hot path (a decision the memory limiter makes at once, allowed) stay where
// they are: built with AssemblyScript's stub runtime (a bump allocator that frees only its last block) the heap
// pointer's advance across N requests is the bytes each request keeps. The release build's heap must stay flat too.
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { rateLimitDomainSchema } from '../../../runtime/config/config-schema.js';
import { createLogger, setLogLevel } from '../../../runtime/log.js';
import { registerSharedStateForeignFunctions } from '../../../runtime/shared-state/foreign-functions.js';
import { createSharedState, type SharedState } from '../../../runtime/shared-state/shared-state.js';
import { MetricsRegistry } from '../../../runtime/telemetry/metrics-registry.js';
import { ForeignFunctionRegistry } from '../../../runtime/wasm/foreign-function.js';
import type { PluginEmulator } from '../../../sdk/testing/index.js';
import { buildWithStubRuntime, bytesKeptPerRequest, ensurePluginBuilt, memoryGrowth, withWarmedEmulator } from '../../../sdk/testing/index.js';

setLogLevel('error', 'ratelimit-alloc-test');
const PLUGIN_DIR = fileURLToPath(new URL('..', import.meta.url));

/** test/bench/plugin-cost.ts's configuration: one descriptor from x-user. */
const CONFIG = { domain: 'api', descriptors: [[{ key: 'user', fromHeader: 'x-user' }]] };

/**
 * Heap bytes each request may keep, measured when the binary call went in: the request's context object (64) and the
 * RateLimitAnswer it holds until the response (64), block and object headers included. The payload is written into
 * memory reused across requests and the host's blocks (the header value, the answer) are freed, so a string, an array
 * or a result object per request would break this.
 */
const BYTES_PER_REQUEST_BUDGET = 128;

let stub: Awaited<ReturnType<typeof buildWithStubRuntime>>;
let state: SharedState | undefined;

beforeAll(async () => {
  stub = await buildWithStubRuntime(PLUGIN_DIR);
}, 120_000);

afterAll(async () => {
  await stub.remove();
});

afterEach(async () => {
  await state?.close();
  state = undefined;
});

function limiter(): ForeignFunctionRegistry {
  state = createSharedState(
    { backend: 'memory' },
    {
      metrics: new MetricsRegistry(),
      nodeName: 'n',
      logger: createLogger('ratelimit-alloc-test'),
      rateLimits: [rateLimitDomainSchema.parse({ domain: 'api', descriptors: [{ entries: [{ key: 'user' }], requestsPerUnit: 1_000_000_000, unit: 'second' }] })],
    },
  );
  const registry = new ForeignFunctionRegistry();
  registerSharedStateForeignFunctions(registry, state);
  return registry;
}

function request(emu: PluginEmulator): void {
  const s = emu.stream({ source: { address: '10.0.0.1', port: 1 } });
  const r = s.sendRequestHeaders({ ':method': 'GET', ':path': '/items', ':authority': 'svc', 'x-user': 'alice' }, true);
  if (r.action !== 'continue') throw new Error(`request not continued: ${r.action}`);
  s.sendResponseHeaders({ ':status': '200', 'content-type': 'text/plain' }, true);
  s.end();
}

describe('ratelimit steady-state allocations', () => {
  it(`allocates at most ${BYTES_PER_REQUEST_BUDGET} bytes per allowed request (stub runtime)`, async () => {
    await withWarmedEmulator({ wasm: stub.wasm, config: CONFIG, foreignFunctions: limiter(), logLevel: 'error' }, 200, request, (emu) => {
      const s = emu.stream({});
      s.sendRequestHeaders({ ':method': 'GET', ':path': '/', ':authority': 'svc', 'x-user': 'alice' }, true);
      s.sendResponseHeaders({ ':status': '200' }, true);
      expect(s.responseHeader('ratelimit-policy')).toBe('"api.user";q=1000000000;w=1');
      s.end();
      expect(bytesKeptPerRequest(emu, 2000, () => request(emu))).toBeLessThanOrEqual(BYTES_PER_REQUEST_BUDGET);
    });
  });

  it('the release build (minimal runtime, collected by the SDK) keeps its memory flat over many requests', async () => {
    await withWarmedEmulator({ wasm: await ensurePluginBuilt(PLUGIN_DIR), config: CONFIG, foreignFunctions: limiter(), logLevel: 'error' }, 2000, request, (emu) => {
      expect(memoryGrowth(emu, 20_000, () => request(emu))).toBe(0);
    });
  });
});
