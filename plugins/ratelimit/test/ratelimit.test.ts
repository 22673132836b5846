// ratelimit through the emulator against weft's real shared limiter (memory backend, foreign functions registered
// as the runtime does): descriptors from request attributes, reject with RateLimit headers, delay, bypass, deferred
// (leased) decisions, a host without the limiter, and bad configurations refused with the previous one kept.
import { fileURLToPath } from 'node:url';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { rateLimitDomainSchema } from '../../../runtime/config/config-schema.js';
import { createLogger, setLogLevel } from '../../../runtime/log.js';
import { registerSharedStateForeignFunctions } from '../../../runtime/shared-state/foreign-functions.js';
import { createSharedState, type SharedState } from '../../../runtime/shared-state/shared-state.js';
import { MetricsRegistry } from '../../../runtime/telemetry/metrics-registry.js';
import { ForeignFunctionRegistry } from '../../../runtime/wasm/foreign-function.js';
import type { StreamInfo } from '../../../runtime/wasm/stream-info.js';
import { PluginEmulator, ensurePluginBuilt } from '../../../sdk/testing/index.js';

setLogLevel('error', 'ratelimit-test');
const PLUGIN_DIR = fileURLToPath(new URL('..', import.meta.url));
let wasm: string;
let emu: PluginEmulator | undefined;
let state: SharedState | undefined;

beforeAll(async () => {
  wasm = await ensurePluginBuilt(PLUGIN_DIR);
});

afterEach(async () => {
  await emu?.close();
  await state?.close();
  emu = undefined;
  state = undefined;
});

/** A registry with weft's shared limiter behind it, limits as a weft.yaml `rateLimits` domain would give them. */
function limiter(descriptors: unknown[]): ForeignFunctionRegistry {
  state = createSharedState(
    { backend: 'memory' },
    { metrics: new MetricsRegistry(), nodeName: 'node-a', logger: createLogger('ratelimit-test'), rateLimits: [rateLimitDomainSchema.parse({ domain: 'api', descriptors })] },
  );
  const registry = new ForeignFunctionRegistry();
  registerSharedStateForeignFunctions(registry, state);
  return registry;
}

const ALICE: StreamInfo = { source: { address: '10.1.2.3', port: 40000, principal: 'spiffe://cluster.local/ns/default/sa/alice' } };
const OPS: StreamInfo = { source: { address: '10.1.2.4', port: 40000, principal: 'spiffe://cluster.local/ns/ops/sa/monitor' } };

function send(e: PluginEmulator, headers: Record<string, string> = {}, info: StreamInfo = ALICE) {
  const s = e.stream(info);
  const r = s.sendRequestHeaders({ ':method': 'GET', ':path': '/api/items', ':authority': 'api', ...headers }, true);
  return { s, r };
}

const CONFIG = { domain: 'api', descriptors: [[{ key: 'user', fromHeader: 'x-user' }], [{ key: 'remote_address', from: 'remoteAddress' }]] };

describe('ratelimit', () => {
  it('rejects over the limit with 429 and RateLimit-Policy, RateLimit and Retry-After; counts per descriptor value', async () => {
    const foreignFunctions = limiter([{ name: 'per-user', entries: [{ key: 'user' }], requestsPerUnit: 2, unit: 'minute' }]);
    emu = await PluginEmulator.create({ wasm, config: CONFIG, foreignFunctions });
    for (let i = 0; i < 2; i++) {
      const { s, r } = send(emu, { 'x-user': 'alice' });
      expect(r.action).toBe('continue');
      s.sendResponseHeaders({ ':status': '200' });
      expect(s.responseHeader('ratelimit-policy')).toBe('"per-user";q=2;w=60');
      expect(s.responseHeader('ratelimit')).toMatch(new RegExp(`^"per-user";r=${1 - i};t=\\d+$`));
      s.end();
    }
    const { s, r } = send(emu, { 'x-user': 'alice' });
    expect(r.action).toBe('localResponse');
    expect(s.localResponse?.status).toBe(429);
    expect(s.localResponseHeader('ratelimit-policy')).toBe('"per-user";q=2;w=60');
    expect(s.localResponseHeader('retry-after')).toMatch(/^\d+$/);
    expect(s.localResponseHeader('x-weft-ratelimited')).toBe('true');
    s.end();
    expect(send(emu, { 'x-user': 'bob' }).r.action).toBe('continue');
    // Without x-user the user descriptor is not sent; the remote_address one has no rule, so nothing limits it.
    expect(send(emu).r.action).toBe('continue');
    expect(await emu.metricValue('ratelimit_plugin_limited_total')).toBe(1);
  });

  it('gives each stream alive at once its own answer, and reuses them for later streams', async () => {
    const foreignFunctions = limiter([{ name: 'per-user', entries: [{ key: 'user' }], requestsPerUnit: 10, unit: 'minute' }]);
    emu = await PluginEmulator.create({ wasm, config: CONFIG, foreignFunctions });
    for (let round = 0; round < 2; round++) {
      const streams = [0, 1, 2].map(() => send(emu!, { 'x-user': 'alice' }));
      for (const { r } of streams) expect(r.action).toBe('continue');
      // Answered in another order than asked: every response carries what its own request was told.
      for (const i of [1, 2, 0]) {
        const { s } = streams[i]!;
        s.sendResponseHeaders({ ':status': '200' });
        expect(s.responseHeader('ratelimit')).toMatch(new RegExp(`^"per-user";r=${9 - 3 * round - i};t=\\d+$`));
        s.end();
      }
    }
    expect(await emu.metricValue('ratelimit_plugin_allowed_total')).toBe(6);
  });

  it('limits by remote address without the port', async () => {
    const foreignFunctions = limiter([{ entries: [{ key: 'remote_address', value: '10.1.2.3' }], requestsPerUnit: 1, unit: 'minute' }]);
    emu = await PluginEmulator.create({ wasm, config: CONFIG, foreignFunctions });
    expect(send(emu).r.action).toBe('continue');
    expect(send(emu, {}, { source: { address: '10.1.2.3', port: 1234 } }).r.action).toBe('localResponse');
    expect(send(emu, {}, OPS).r.action).toBe('continue');
  });

  it('delays a request over the limit until the limiter lets it through', async () => {
    const foreignFunctions = limiter([{ entries: [{ key: 'user' }], requestsPerUnit: 1, unit: 'second', algorithm: 'gcra' }]);
    emu = await PluginEmulator.create({ wasm, config: { ...CONFIG, strategy: 'delay', maxDelayMs: 2000 }, foreignFunctions });
    expect(send(emu, { 'x-user': 'carol' }).r.action).toBe('continue');
    const started = performance.now();
    const { r } = send(emu, { 'x-user': 'carol' });
    expect(r.action).toBe('pause');
    expect((await r.resume!).action).toBe('continue');
    const waited = performance.now() - started;
    expect(waited).toBeGreaterThan(500);
    expect(waited).toBeLessThan(2000);
    expect(await emu.metricValue('ratelimit_plugin_delayed_total')).toBe(1);
  });

  it('rejects instead of delaying past maxDelayMs', async () => {
    const foreignFunctions = limiter([{ entries: [{ key: 'user' }], requestsPerUnit: 1, unit: 'minute' }]);
    emu = await PluginEmulator.create({ wasm, config: { ...CONFIG, strategy: 'delay', maxDelayMs: 100 }, foreignFunctions });
    expect(send(emu, { 'x-user': 'dave' }).r.action).toBe('continue');
    const { s, r } = send(emu, { 'x-user': 'dave' });
    expect(r.action).toBe('localResponse');
    expect(s.localResponse?.status).toBe(429);
  });

  it('lets privileged callers bypass the limiter by principal or header', async () => {
    const foreignFunctions = limiter([{ entries: [{ key: 'generic_key', value: 'all' }], requestsPerUnit: 1, unit: 'minute' }]);
    emu = await PluginEmulator.create({
      wasm,
      config: { domain: 'api', descriptors: [[{ key: 'generic_key', value: 'all' }]], bypass: { principals: ['cluster.local/ns/ops/*'], headers: [{ name: 'X-Internal', values: ['yes'] }] } },
      foreignFunctions,
    });
    expect(send(emu).r.action).toBe('continue');
    expect(send(emu).r.action).toBe('localResponse');
    for (let i = 0; i < 5; i++) expect(send(emu, {}, OPS).r.action).toBe('continue');
    expect(send(emu, { 'x-internal': 'yes' }).r.action).toBe('continue');
    expect(await emu.metricValue('ratelimit_plugin_bypassed_total')).toBe(6);
  });

  it('waits for a deferred decision (a local-mode limit fetching its lease) and then applies it', async () => {
    const foreignFunctions = limiter([{ entries: [{ key: 'user' }], requestsPerUnit: 100, unit: 'minute', mode: 'local' }]);
    emu = await PluginEmulator.create({ wasm, config: CONFIG, foreignFunctions });
    const first = send(emu, { 'x-user': 'erin' });
    if (first.r.action === 'pause') expect((await first.r.resume!).action).toBe('continue');
    else expect(first.r.action).toBe('continue');
    let paused = first.r.action === 'pause' ? 1 : 0;
    for (let i = 0; i < 20; i++) {
      const { r } = send(emu, { 'x-user': 'erin' });
      if (r.action === 'pause') {
        paused++;
        expect((await r.resume!).action).toBe('continue');
      } else expect(r.action).toBe('continue');
    }
    expect(paused).toBeGreaterThan(0);
    expect(await emu.metricValue('ratelimit_plugin_allowed_total')).toBe(21);
  });

  it('allows (default) or refuses with 500 when the host has no shared limiter', async () => {
    emu = await PluginEmulator.create({ wasm, config: CONFIG });
    expect(send(emu, { 'x-user': 'x' }).r.action).toBe('continue');
    expect(emu.logs.some((l) => l.message.includes('the host has no shared limiter'))).toBe(true);
    expect((await emu.reconfigure({ ...CONFIG, failureMode: 'deny' })).ok).toBe(true);
    const { s } = send(emu, { 'x-user': 'x' });
    expect(s.localResponse?.status).toBe(500);
  });

  it.each([
    ['not JSON', 'domain=api'],
    ['no domain', { descriptors: [[{ key: 'a', value: 'b' }]] }],
    ['no descriptors', { domain: 'api', descriptors: [] }],
    ['an empty descriptor', { domain: 'api', descriptors: [[]] }],
    ['an entry with two sources', { domain: 'api', descriptors: [[{ key: 'a', value: 'b', fromHeader: 'c' }]] }],
    ['an unknown from', { domain: 'api', descriptors: [[{ key: 'a', from: 'cookie' }]] }],
    ['an unknown strategy', { ...CONFIG, strategy: 'queue' }],
    ['a bad bypass', { ...CONFIG, bypass: { headers: [{ name: 'x' }] } }],
  ])('rejects %s and keeps the previous configuration', async (_what, bad) => {
    const foreignFunctions = limiter([{ entries: [{ key: 'user' }], requestsPerUnit: 1, unit: 'minute' }]);
    emu = await PluginEmulator.create({ wasm, config: CONFIG, foreignFunctions });
    expect((await emu.reconfigure(bad)).ok).toBe(false);
    expect(emu.logs.some((l) => l.message.startsWith('ratelimit: rejected configuration:'))).toBe(true);
    expect(send(emu, { 'x-user': 'zed' }).r.action).toBe('continue');
    expect(send(emu, { 'x-user': 'zed' }).r.action).toBe('localResponse');
  });
});
