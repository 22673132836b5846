// The shared-state foreign functions end to end: a real AssemblyScript plugin (built with weft's SDK) in weft's own
// PluginHost calls weft.ratelimit.* and weft.breaker.*, answered at once (memory) or later through proxy_on_foreign_function (Redis).
import { fileURLToPath } from 'node:url';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { circuitBreakersSchema, rateLimitDomainSchema, type StateConfig } from '../../runtime/config/config-schema.js';
import { createLogger, setLogLevel } from '../../runtime/log.js';
import { registerSharedStateForeignFunctions } from '../../runtime/shared-state/foreign-functions.js';
import { createSharedState, type SharedState } from '../../runtime/shared-state/shared-state.js';
import { MetricsRegistry } from '../../runtime/telemetry/metrics-registry.js';
import { ForeignFunctionRegistry } from '../../runtime/wasm/foreign-function.js';
import { ensurePluginBuilt, PluginEmulator, type StepResult } from '../../sdk/testing/index.js';
import { requireCommands } from '../helpers/requirements.js';
import { startRedis } from '../helpers/redis-server.js';

setLogLevel('error');
const PLUGIN_DIR = fileURLToPath(new URL('./shared-state-plugin', import.meta.url));
let wasm: string;
const cleanup: (() => Promise<void>)[] = [];

beforeAll(async () => {
  wasm = await ensurePluginBuilt(PLUGIN_DIR);
}, 120_000);
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

async function setup(stateConfig: StateConfig): Promise<{ emu: PluginEmulator; state: SharedState }> {
  const state = createSharedState(stateConfig, {
    metrics: new MetricsRegistry(),
    nodeName: 'n',
    logger: createLogger('shared-state'),
    rateLimits: [rateLimitDomainSchema.parse({ domain: 'fixture', descriptors: [{ name: 'per-user', entries: [{ key: 'user' }], requestsPerUnit: 2, unit: 'hour' }] })],
    circuitBreakers: circuitBreakersSchema.parse({ defaults: { minimumCalls: 2, failureRateThreshold: 50, openMs: 60_000, flushIntervalMs: 10 } }),
  });
  cleanup.push(() => state.close());
  await state.ready();
  const registry = new ForeignFunctionRegistry();
  registerSharedStateForeignFunctions(registry, state);
  const emu = await PluginEmulator.create({ wasm, foreignFunctions: registry });
  cleanup.push(() => emu.close());
  return { emu, state };
}

const request = (user: string): Record<string, string> => ({ ':method': 'GET', ':path': '/', ':authority': 'svc', 'x-user': user });

/** The plugin's final decision for the request headers, following a pause to its resumption. */
async function outcome(step: StepResult): Promise<StepResult> {
  return step.action === 'pause' ? outcome(await step.resume!) : step;
}

describe('shared-state foreign functions from a real plugin', () => {
  it('memory backend: decisions come back at once; over the limit the plugin answers 429 with RateLimit headers', async () => {
    const { emu } = await setup({ backend: 'memory' });
    for (let i = 0; i < 2; i++) {
      const s = emu.stream();
      const step = s.sendRequestHeaders(request('alice'), true);
      expect(step.action).toBe('continue');
      expect(s.requestHeader('x-breaker-state')).toBe('CLOSED');
      s.end();
    }
    const s = emu.stream();
    const over = s.sendRequestHeaders(request('alice'), true);
    expect(over.action).toBe('localResponse');
    expect(s.localResponse?.status).toBe(429);
    expect(s.localResponseHeader('ratelimit-policy')).toBe('"per-user";q=2;w=3600');
    expect(s.localResponseHeader('retry-after')).toBeDefined();
    expect(emu.stream().sendRequestHeaders(request('bob'), true).action).toBe('continue');
  });

  it('memory backend: failing responses open the shared breaker and the plugin answers 503', async () => {
    const { emu, state } = await setup({ backend: 'memory' });
    for (const user of ['u1', 'u2']) {
      const s = emu.stream();
      expect(s.sendRequestHeaders(request(user), true).action).toBe('continue');
      s.sendResponseHeaders({ ':status': '503' }, true);
      s.end();
    }
    const end = Date.now() + 2_000;
    while (state.breakers.state('upstream') !== 'OPEN' && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
    const s = emu.stream();
    expect(s.sendRequestHeaders(request('u3'), true).action).toBe('localResponse');
    expect(s.localResponse?.status).toBe(503);
    expect(s.localResponseHeader('x-weft-error')).toBe('WEFT_ERR_CIRCUIT_OPEN');
  });

  it('redis backend: the stream pauses until proxy_on_foreign_function delivers the decision', async (ctx) => {
    requireCommands(ctx, 'redis-server', 'redis-cli');
    const redis = await startRedis();
    cleanup.push(() => redis.stop());
    const { emu } = await setup({ backend: 'redis', redis: { url: redis.url, mode: 'single', timeoutMs: 200, failMode: 'closed', keyPrefix: 'plug' } });
    const results = [];
    for (let i = 0; i < 3; i++) {
      const s = emu.stream();
      const first = s.sendRequestHeaders(request('carol'), true);
      expect(first.action).toBe('pause');
      results.push({ final: await outcome(first), status: s.localResponse?.status });
      s.end();
    }
    expect(results.map((r) => r.final.action)).toEqual(['continue', 'continue', 'localResponse']);
    expect(results[2]!.status).toBe(429);
  });
});
