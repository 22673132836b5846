// weft.ratelimit.* and weft.breaker.* through the ForeignFunctionRegistry: JSON payloads, immediate and deferred answers, bad input.
import { afterEach, describe, expect, it } from 'vitest';
import { circuitBreakersSchema, rateLimitDomainSchema } from '../config/config-schema.js';
import { createLogger, setLogLevel } from '../log.js';
import { MetricsRegistry } from '../telemetry/metrics-registry.js';
import { ForeignFunctionRegistry } from '../wasm/foreign-function.js';
import { FOREIGN_FUNCTION_NAMES, registerSharedStateForeignFunctions } from './foreign-functions.js';
import { createSharedState, type SharedState } from './shared-state.js';

setLogLevel('warn');
const states: SharedState[] = [];
afterEach(async () => {
  await Promise.all(states.splice(0).map((s) => s.close()));
});

function setup(): { registry: ForeignFunctionRegistry; ff: ReturnType<typeof registerSharedStateForeignFunctions>; state: SharedState } {
  const state = createSharedState(
    { backend: 'memory' },
    {
      metrics: new MetricsRegistry(),
      nodeName: 'n',
      logger: createLogger('ff'),
      rateLimits: [
        rateLimitDomainSchema.parse({
          domain: 'p',
          descriptors: [
            { name: 'strict', entries: [{ key: 's' }], requestsPerUnit: 1, unit: 'minute' },
            { name: 'local', entries: [{ key: 'l' }], requestsPerUnit: 100, unit: 'minute', mode: 'local' },
          ],
        }),
      ],
      circuitBreakers: circuitBreakersSchema.parse({ defaults: { minimumCalls: 2, openMs: 60_000 } }),
    },
  );
  states.push(state);
  const registry = new ForeignFunctionRegistry();
  return { registry, ff: registerSharedStateForeignFunctions(registry, state), state };
}

const enc = (v: unknown): Uint8Array => new TextEncoder().encode(typeof v === 'string' ? v : JSON.stringify(v));
const dec = (b: Uint8Array): Record<string, unknown> => JSON.parse(new TextDecoder().decode(b)) as Record<string, unknown>;
const ctx = { pluginName: 'plug', contextId: 7 };

async function call(registry: ForeignFunctionRegistry, name: string, payload: unknown): Promise<{ sync: boolean; value: Record<string, unknown> }> {
  const result = registry.lookup(name)!.fn(enc(payload), ctx);
  return { sync: !(result instanceof Promise), value: dec(await result) };
}

describe('shared-state foreign functions', () => {
  it('registers all four names with stable ids', () => {
    const { registry, ff } = setup();
    expect(registry.names().sort()).toEqual(Object.values(FOREIGN_FUNCTION_NAMES).sort());
    expect(registry.lookup(FOREIGN_FUNCTION_NAMES.shouldRateLimit)!.id).toBe(ff.ids.shouldRateLimit);
  });

  it('answers rate-limit decisions, deferred while a lease is fetched and immediate otherwise', async () => {
    const { registry } = setup();
    const strict = { id: 'r1', domain: 'p', descriptors: [{ entries: [{ key: 's', value: 'x' }] }] };
    const first = await call(registry, FOREIGN_FUNCTION_NAMES.shouldRateLimit, strict);
    // The memory backend decides strict limits in the same tick.
    expect(first.sync).toBe(true);
    expect(first.value).toMatchObject({ id: 'r1', context: 7, code: 'OK', statuses: [{ code: 'OK', remaining: 0, name: 'strict', source: 'backend' }] });
    const second = await call(registry, FOREIGN_FUNCTION_NAMES.shouldRateLimit, strict);
    expect(second.value.code).toBe('OVER_LIMIT');
    expect((second.value.headers as Record<string, string>)['retry-after']).toBeDefined();
    const local = { domain: 'p', descriptors: [{ entries: [{ key: 'l', value: 'x' }] }] };
    expect((await call(registry, FOREIGN_FUNCTION_NAMES.shouldRateLimit, local)).sync).toBe(false);
    const leased = await call(registry, FOREIGN_FUNCTION_NAMES.shouldRateLimit, local);
    expect(leased.sync).toBe(true);
    expect(leased.value).toMatchObject({ code: 'OK', statuses: [{ source: 'lease' }] });
  });

  it('hands out breaker permits and takes outcomes back', async () => {
    const { registry, ff } = setup();
    const acquire = async (): Promise<Record<string, unknown>> => (await call(registry, FOREIGN_FUNCTION_NAMES.breakerAcquire, { id: 1, name: 'up' })).value;
    for (let i = 0; i < 2; i++) {
      const permit = await acquire();
      expect(permit).toMatchObject({ id: 1, context: 7, allowed: true, state: 'CLOSED', probe: false });
      expect((await call(registry, FOREIGN_FUNCTION_NAMES.breakerRecord, { permit: permit.permit, success: false })).value).toEqual({ ok: true });
    }
    expect(ff.outstandingPermits()).toBe(0);
    const again = await call(registry, FOREIGN_FUNCTION_NAMES.breakerRecord, { permit: '1', success: true });
    expect(again.value.code).toBe('WEFT_ERR_BAD_REQUEST');
    // Memory backend flushes on its timer; the shared window then opens the breaker for this node.
    const end = Date.now() + 2_000;
    while ((await call(registry, FOREIGN_FUNCTION_NAMES.breakerState, { name: 'up' })).value.state !== 'OPEN' && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
    expect((await call(registry, FOREIGN_FUNCTION_NAMES.breakerState, { name: 'up' })).value.state).toBe('OPEN');
    expect(await acquire()).toMatchObject({ allowed: false, state: 'OPEN', permit: null });
  });

  it('answers malformed payloads with an error object at once', async () => {
    const { registry } = setup();
    for (const bad of ['not json', '[1]', { domain: '' }, { domain: 'p', descriptors: [] }, { domain: 'p', descriptors: [{ entries: [{ key: 'k' }] }] }, { domain: 'p', descriptors: [{ entries: [{ key: 'k', value: 'v' }] }], hitsAddend: -1 }]) {
      const r = await call(registry, FOREIGN_FUNCTION_NAMES.shouldRateLimit, bad);
      expect(r.sync).toBe(true);
      expect(r.value.code).toBe('WEFT_ERR_BAD_REQUEST');
    }
    const invalidUtf8 = registry.lookup(FOREIGN_FUNCTION_NAMES.breakerState)!.fn(new Uint8Array([0xff, 0xfe]), ctx);
    expect(dec(invalidUtf8 as Uint8Array).code).toBe('WEFT_ERR_BAD_REQUEST');
    expect(dec(registry.lookup(FOREIGN_FUNCTION_NAMES.breakerAcquire)!.fn(enc({}), ctx) as Uint8Array).error).toMatch(/name/);
  });
});
