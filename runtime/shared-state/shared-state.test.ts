// createSharedState: the memory default works out of the box, reloads swap rules live, bad Redis settings are refused with a clear error.
import { describe, expect, it } from 'vitest';
import { circuitBreakersSchema, rateLimitDomainSchema } from '../config/config-schema.js';
import { WeftError } from '../errors.js';
import { createLogger } from '../log.js';
import { MetricsRegistry } from '../telemetry/metrics-registry.js';
import { createSharedState } from './shared-state.js';

const opts = () => ({ metrics: new MetricsRegistry(), nodeName: 'n', logger: createLogger('shared-state') });
const ask = { domain: 'd', descriptors: [{ entries: [{ key: 'k', value: 'v' }] }] };

describe('createSharedState', () => {
  it('memory: ready at once; update() swaps rules and breaker tuning without losing counters', async () => {
    const s = createSharedState({ backend: 'memory' }, opts());
    await s.ready();
    expect(s.backend.kind).toBe('memory');
    expect((await s.rateLimiter.shouldRateLimit(ask)).statuses[0]!.source).toBe('no-rule');
    const rules = [rateLimitDomainSchema.parse({ domain: 'd', descriptors: [{ entries: [{ key: 'k' }], requestsPerUnit: 1, unit: 'day' }] })];
    s.update(rules, circuitBreakersSchema.parse({}));
    expect((await s.rateLimiter.shouldRateLimit(ask)).overallCode).toBe('OK');
    s.update(rules, circuitBreakersSchema.parse({}));
    expect((await s.rateLimiter.shouldRateLimit(ask)).overallCode).toBe('OVER_LIMIT');
    await s.close();
  });

  it('redis: an unusable URL is a configuration error, not a crash later', () => {
    const bad = (url: string) => () =>
      createSharedState({ backend: 'redis', redis: { url, mode: 'single', timeoutMs: 50, failMode: 'open', keyPrefix: 'w' } }, opts());
    expect(bad('http://127.0.0.1:6379')).toThrow(WeftError);
    expect(bad('http://127.0.0.1:6379')).toThrow(/redis:\/\/ or rediss:\/\//);
    expect(bad('redis://[::1')).toThrow(/not a URL/);
  });
});
