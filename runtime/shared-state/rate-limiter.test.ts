// The descriptor rate limiter over the memory backend: matching, strict and local modes, over-limit cache, shadow mode, headers.
import { describe, expect, it, vi } from 'vitest';
import type { RateLimitDomainConfig } from '../config/config-schema.js';
import { rateLimitDomainSchema } from '../config/config-schema.js';
import { createLogger } from '../log.js';
import { MetricsRegistry } from '../telemetry/metrics-registry.js';
import { RateLimiter } from './rate-limiter.js';
import { MemoryBackend, MemoryStore } from './state-memory.js';
import type { ConsumeResult, LimitSpec } from './state-backend.js';

/** Counts decisions the backend makes (consume() goes through consumeNow() in the memory backend). */
class CountingBackend extends MemoryBackend {
  calls = 0;
  override consumeNow(spec: LimitSpec, hits: number, minGrant: number): ConsumeResult {
    this.calls++;
    return super.consumeNow(spec, hits, minGrant);
  }
}

/** A frozen clock mid-second (and mid-minute): window boundaries cannot fall between a test's requests. */
const frozen = (): MemoryStore => new MemoryStore(() => 1_700_000_000_500);

function limiter(domains: unknown[], backend = new CountingBackend(frozen())): { rl: RateLimiter; backend: CountingBackend; metrics: MetricsRegistry } {
  const metrics = new MetricsRegistry();
  const parsed: RateLimitDomainConfig[] = domains.map((d) => rateLimitDomainSchema.parse(d));
  const rl = new RateLimiter(backend, { domains: parsed, defaultFailMode: 'open', timeoutMs: 50, metrics, logger: createLogger('rl-test') });
  return { rl, backend, metrics };
}

const req = (domain: string, ...entries: [string, string][]) => ({ domain, descriptors: [{ entries: entries.map(([key, value]) => ({ key, value })) }] });

describe('RateLimiter', () => {
  it('picks the most specific rule and counts wildcard values separately', async () => {
    const { rl } = limiter([
      {
        domain: 'api',
        descriptors: [
          { entries: [{ key: 'user' }], requestsPerUnit: 2, unit: 'minute' },
          { name: 'vip', entries: [{ key: 'user', value: 'alice' }], requestsPerUnit: 4, unit: 'minute' },
        ],
      },
    ]);
    const codes = async (user: string, n: number): Promise<string[]> => {
      const out = [];
      for (let i = 0; i < n; i++) out.push((await rl.shouldRateLimit(req('api', ['user', user]))).overallCode);
      return out;
    };
    expect(await codes('bob', 3)).toEqual(['OK', 'OK', 'OVER_LIMIT']);
    expect(await codes('carol', 2)).toEqual(['OK', 'OK']);
    expect(await codes('alice', 5)).toEqual(['OK', 'OK', 'OK', 'OK', 'OVER_LIMIT']);
    const none = await rl.shouldRateLimit(req('api', ['path', '/x']));
    expect(none.statuses[0]!.source).toBe('no-rule');
    expect(none.headers).toEqual({});
  });

  it('answers repeated rejections from the over-limit cache without backend calls', async () => {
    const { rl, backend, metrics } = limiter([{ domain: 'd', descriptors: [{ entries: [{ key: 'k' }], requestsPerUnit: 3, unit: 'hour' }] }]);
    for (let i = 0; i < 3; i++) expect((await rl.shouldRateLimit(req('d', ['k', 'v']))).overallCode).toBe('OK');
    const first = await rl.shouldRateLimit(req('d', ['k', 'v']));
    expect(first.statuses[0]!.source).toBe('backend');
    const calls = backend.calls;
    for (let i = 0; i < 100; i++) {
      const r = await rl.shouldRateLimit(req('d', ['k', 'v']));
      expect(r.overallCode).toBe('OVER_LIMIT');
      expect(r.statuses[0]!.source).toBe('cache');
    }
    expect(backend.calls).toBe(calls);
    const text = await metrics.render();
    expect(text).toMatch(/weft_ratelimit_decisions_total\{domain="d",code="OVER_LIMIT",mode="strict",source="cache"\} 100/);
    // remaining 2, 1, 0 of 3: below 20 % of the limit only for the last admitted one.
    expect(text).toMatch(/weft_ratelimit_near_limit_total\{domain="d"\} 1/);
  });

  it('emits RateLimit-Policy, RateLimit and Retry-After from the descriptor closest to its limit', async () => {
    const { rl } = limiter([
      {
        domain: 'h',
        descriptors: [
          { name: 'per-ip', entries: [{ key: 'ip' }], requestsPerUnit: 10, unit: 'minute' },
          { name: 'per-route', entries: [{ key: 'route' }], requestsPerUnit: 2, unit: 'second' },
        ],
      },
    ]);
    const both = { domain: 'h', descriptors: [{ entries: [{ key: 'ip', value: '1.2.3.4' }] }, { entries: [{ key: 'route', value: '/a' }] }] };
    const ok = await rl.shouldRateLimit(both);
    expect(ok.headers['ratelimit-policy']).toBe('"per-route";q=2;w=1');
    expect(ok.headers['ratelimit']).toMatch(/^"per-route";r=1;t=[01]$/);
    await rl.shouldRateLimit(both);
    const over = await rl.shouldRateLimit(both);
    expect(over.overallCode).toBe('OVER_LIMIT');
    expect(over.statuses.map((s) => s.code)).toEqual(['OK', 'OVER_LIMIT']);
    expect(over.headers['retry-after']).toBe('1');
    expect(over.headers['ratelimit']).toMatch(/^"per-route";r=0;t=[01]$/);
  });

  it('honours hits addends, checks with 0 hits, unlimited and zero-limit rules, shadow mode and overrides', async () => {
    const { rl, backend } = limiter([
      {
        domain: 'x',
        descriptors: [
          { entries: [{ key: 'a' }], requestsPerUnit: 10, unit: 'minute' },
          { entries: [{ key: 'free' }], requestsPerUnit: 1, unit: 'second', unlimited: true },
          { entries: [{ key: 'banned' }], requestsPerUnit: 0, unit: 'second' },
          { entries: [{ key: 'shadow' }], requestsPerUnit: 1, unit: 'hour', shadowMode: true },
        ],
      },
    ]);
    const hits = await rl.shouldRateLimit({ ...req('x', ['a', '1']), hitsAddend: 7 });
    expect(hits.statuses[0]!.remaining).toBe(3);
    const check = await rl.shouldRateLimit({ domain: 'x', descriptors: [{ entries: [{ key: 'a', value: '1' }], hitsAddend: 0 }] });
    expect(check.statuses[0]).toMatchObject({ code: 'OK', remaining: 3 });
    expect((await rl.shouldRateLimit({ ...req('x', ['a', '1']), hitsAddend: 4 })).overallCode).toBe('OVER_LIMIT');
    const calls = backend.calls;
    expect((await rl.shouldRateLimit(req('x', ['free', 'y']))).statuses[0]!.source).toBe('unlimited');
    expect((await rl.shouldRateLimit(req('x', ['banned', 'y']))).overallCode).toBe('OVER_LIMIT');
    expect(backend.calls).toBe(calls);
    await rl.shouldRateLimit(req('x', ['shadow', 'z']));
    expect((await rl.shouldRateLimit(req('x', ['shadow', 'z']))).overallCode).toBe('OK');
    const override = { domain: 'x', descriptors: [{ entries: [{ key: 'o', value: '1' }], limit: { requestsPerUnit: 1, unit: 'minute' as const } }] };
    expect((await rl.shouldRateLimit(override)).overallCode).toBe('OK');
    expect((await rl.shouldRateLimit(override)).overallCode).toBe('OVER_LIMIT');
  });

  it.each([false, true])('decides a prepared request as decide() does, every time, and resolves it again after a reload (reuse %s)', async (reuse) => {
    const domains = [
      {
        domain: 'x',
        descriptors: [
          { entries: [{ key: 'a' }], requestsPerUnit: 3, unit: 'minute' },
          { name: 'vip', entries: [{ key: 'a', value: 'vip' }], requestsPerUnit: 5, unit: 'minute' },
          { entries: [{ key: 'free' }], requestsPerUnit: 1, unit: 'second', unlimited: true },
          { entries: [{ key: 'shadow' }], requestsPerUnit: 1, unit: 'hour', shadowMode: true },
        ],
      },
    ];
    const plain = limiter(domains).rl;
    const { rl } = limiter(domains);
    const request = {
      domain: 'x',
      hitsAddend: 1,
      descriptors: [
        { entries: [{ key: 'a', value: 'u1' }] },
        { entries: [{ key: 'a', value: 'vip' }] },
        { entries: [{ key: 'free', value: 'y' }] },
        { entries: [{ key: 'shadow', value: 'z' }] },
        { entries: [{ key: 'none', value: 'n' }] },
        { entries: [{ key: 'o', value: '1' }], limit: { requestsPerUnit: 2, unit: 'minute' as const } },
      ],
    };
    // One monotonic clock for both limiters: the over-limit cache's reset times then agree.
    vi.useFakeTimers({ toFake: ['performance'] });
    const prepared = rl.prepare(request);
    for (let i = 0; i < 5; i++) {
      const want = await plain.shouldRateLimit(request);
      const got = await rl.decidePrepared(prepared, reuse);
      expect(got.overallCode).toBe(want.overallCode);
      expect(got.statuses).toEqual(want.statuses);
      expect(got.headers).toEqual(want.headers);
    }
    // A reload: vip now falls under the new wildcard rule, free and shadow under none; u1's and the override's cached
    // denials carry over, as for any request.
    const reloaded = [rateLimitDomainSchema.parse({ domain: 'x', descriptors: [{ name: 'wide', entries: [{ key: 'a' }], requestsPerUnit: 100, unit: 'minute' }] })];
    rl.update(reloaded);
    plain.update(reloaded);
    const after = await rl.decidePrepared(prepared, reuse);
    expect(after.statuses.map((s) => [s.rule?.name, s.source])).toEqual([
      ['wide', 'cache'], ['wide', 'backend'], [undefined, 'no-rule'], [undefined, 'no-rule'], [undefined, 'no-rule'], ['x.override', 'cache'],
    ]);
    expect(after.statuses).toEqual((await plain.shouldRateLimit(request)).statuses);
    vi.useRealTimers();
  });

  it('reuses a prepared request\'s answer objects only for its own synchronous answers: interleaved requests and deferred answers keep theirs', async () => {
    const { rl } = limiter([
      {
        domain: 'r',
        descriptors: [
          { name: 'user', entries: [{ key: 'user' }], requestsPerUnit: 10, unit: 'minute' },
          { name: 'leased', entries: [{ key: 'l' }], requestsPerUnit: 1000, unit: 'minute', mode: 'local' },
        ],
      },
    ]);
    const alice = rl.prepare(req('r', ['user', 'alice']));
    const bob = rl.prepare({ domain: 'r', descriptors: [{ entries: [{ key: 'user', value: 'bob' }] }, { entries: [{ key: 'user', value: 'bob' }] }] });
    const a1 = rl.decidePrepared(alice, true);
    const b1 = rl.decidePrepared(bob, true);
    if (a1 instanceof Promise || b1 instanceof Promise) throw new Error('memory decisions are synchronous');
    // alice's answer is still hers after bob's decision (and bob's two descriptors are two statuses, one counter).
    expect(a1.statuses.map((s) => s.remaining)).toEqual([9]);
    expect(b1.statuses.map((s) => s.remaining)).toEqual([9, 8]);
    expect(b1.statuses[0]).not.toBe(b1.statuses[1]);
    expect(a1.headers.ratelimit).toMatch(/^"user";r=9;/);
    expect(b1.headers.ratelimit).toMatch(/^"user";r=8;/);
    // The next decision of alice rewrites her answer in place: same objects, new numbers and header strings.
    const a2 = rl.decidePrepared(alice, true);
    if (a2 instanceof Promise) throw new Error('memory decisions are synchronous');
    expect(a2).toBe(a1);
    expect(a2.statuses[0]).toBe(a1.statuses[0]);
    expect(a2.statuses[0]!.remaining).toBe(8);
    expect(a2.headers.ratelimit).toMatch(/^"user";r=8;/);
    // Without reuse every answer is new.
    const a3 = rl.decidePrepared(alice, false);
    if (a3 instanceof Promise) throw new Error('memory decisions are synchronous');
    expect(a3).not.toBe(a1);
    expect(a3.statuses[0]!.remaining).toBe(7);
    expect(a1.statuses[0]!.remaining).toBe(8);

    // A deferred answer (a lease being fetched) next to a synchronous status: decisions of the same prepared request
    // made while it waits must not show through it.
    const mixed = rl.prepare({ domain: 'r', descriptors: [{ entries: [{ key: 'user', value: 'carol' }] }, { entries: [{ key: 'l', value: 'x' }] }] });
    const deferred = rl.decidePrepared(mixed, true);
    expect(deferred).toBeInstanceOf(Promise);
    const meanwhile = rl.decidePrepared(mixed, true);
    const later = await deferred;
    const laterToo = await meanwhile;
    expect(later.statuses.map((s) => [s.rule?.name, s.remaining])).toEqual([['user', 9], ['leased', expect.any(Number)]]);
    expect(laterToo.statuses[0]!.remaining).toBe(8);
    const sync = rl.decidePrepared(mixed, true);
    if (sync instanceof Promise) throw new Error('the lease is held now');
    expect(sync.statuses.map((s) => s.remaining)[0]).toBe(7);
    expect(later.statuses[0]!.remaining).toBe(9);
  });

  it('local mode decides synchronously from leases and takes leases in the background', async () => {
    const { rl, backend } = limiter([{ domain: 'l', descriptors: [{ entries: [{ key: 'k' }], requestsPerUnit: 1000, unit: 'minute', mode: 'local' }] }]);
    const first = rl.decide(req('l', ['k', 'v']));
    expect(first).toBeInstanceOf(Promise);
    expect((await first).overallCode).toBe('OK');
    let sync = 0;
    let admitted = 1;
    for (let i = 0; i < 1_200; i++) {
      const r = rl.decide(req('l', ['k', 'v']));
      if (!(r instanceof Promise)) sync++;
      const done = await r;
      if (done.overallCode === 'OK') admitted++;
    }
    expect(admitted).toBe(1000);
    expect(sync).toBeGreaterThan(1_100);
    // 1 000 tokens in leases of 20: about 50 backend calls for 1 201 decisions.
    expect(backend.calls).toBeLessThan(70);
  });

  it('applies failMode when the backend fails', async () => {
    class Broken extends CountingBackend {
      override consume(): Promise<ConsumeResult> {
        return Promise.reject(Object.assign(new Error('down'), { reason: 'unavailable' }));
      }
      override consumeNow(): ConsumeResult {
        throw Object.assign(new Error('down'), { reason: 'unavailable' });
      }
    }
    const { rl, metrics } = limiter(
      [
        {
          domain: 'f',
          descriptors: [
            { entries: [{ key: 'open' }], requestsPerUnit: 1, unit: 'second' },
            { entries: [{ key: 'closed' }], requestsPerUnit: 1, unit: 'second', failMode: 'closed', mode: 'local' },
            { entries: [{ key: 'alone' }], requestsPerUnit: 4, unit: 'day', failMode: 'local', localShare: 0.5 },
          ],
        },
      ],
      new Broken(frozen()),
    );
    expect((await rl.shouldRateLimit(req('f', ['open', '1']))).statuses[0]).toMatchObject({ code: 'OK', source: 'fail-open' });
    expect((await rl.shouldRateLimit(req('f', ['closed', '1']))).statuses[0]).toMatchObject({ code: 'OVER_LIMIT', source: 'fail-closed' });
    expect(await metrics.render()).toMatch(/weft_ratelimit_degraded_total\{domain="f",fail_mode="closed",reason="unavailable"\} 1/);
    // failMode local: this node alone enforces half of 4 until the backend is back.
    const alone = [];
    for (let i = 0; i < 3; i++) alone.push((await rl.shouldRateLimit(req('f', ['alone', 'x']))).statuses[0]!);
    expect(alone.map((x) => [x.code, x.source])).toEqual([
      ['OK', 'fail-local'],
      ['OK', 'fail-local'],
      ['OVER_LIMIT', 'fail-local'],
    ]);
  });
});
