// weft.ratelimit.should_rate_limit in its binary form: the same decisions and headers as the JSON form, deferred
// answers, and malformed payloads answered with a clear binary error while the function keeps serving.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { circuitBreakersSchema, rateLimitDomainSchema } from '../config/config-schema.js';
import { createLogger, setLogLevel } from '../log.js';
import { MetricsRegistry } from '../telemetry/metrics-registry.js';
import { ForeignFunctionRegistry } from '../wasm/foreign-function.js';
import { FOREIGN_FUNCTION_NAMES, registerSharedStateForeignFunctions } from './foreign-functions.js';
import { HITS_UNSET } from './rate-limit-binary.js';
import { rateLimitHeaders } from './rate-limit-headers.js';
import { DECISION_SOURCES } from './rate-limiter.js';
import { createSharedState, type SharedState } from './shared-state.js';

setLogLevel('warn');
const states: SharedState[] = [];
afterEach(async () => {
  vi.useRealTimers();
  await Promise.all(states.splice(0).map((s) => s.close()));
});

function setup(): ForeignFunctionRegistry {
  const state = createSharedState(
    { backend: 'memory' },
    {
      metrics: new MetricsRegistry(),
      nodeName: 'n',
      logger: createLogger('binary'),
      rateLimits: [
        rateLimitDomainSchema.parse({
          domain: 'api',
          descriptors: [
            { name: 'per-user', entries: [{ key: 'user' }], requestsPerUnit: 2, unit: 'minute' },
            { entries: [{ key: 'path', value: '/a"b' }], requestsPerUnit: 5, unit: 'second' },
            { name: 'leased', entries: [{ key: 'l' }], requestsPerUnit: 100, unit: 'minute', mode: 'local' },
            { name: 'big', entries: [{ key: 'big' }], requestsPerUnit: 3_000_000_000, unit: 'day' },
            { name: 'mid', entries: [{ key: 'mid' }], requestsPerUnit: 1_000_000_000, unit: 'hour' },
          ],
        }),
      ],
    },
  );
  states.push(state);
  const registry = new ForeignFunctionRegistry();
  registerSharedStateForeignFunctions(registry, state);
  return registry;
}

interface Descriptor {
  entries: [string | Uint8Array, string | Uint8Array][];
  hitsAddend?: number;
}

const bytes = (s: string | Uint8Array): Uint8Array => (typeof s === 'string' ? new TextEncoder().encode(s) : s);

/** The documented request layout, written independently of the host's decoder. */
function request(id: number, domain: string, descriptors: Descriptor[], hitsAddend = 1): Uint8Array {
  const parts: number[] = [0x01, 0, descriptors.length & 0xff, descriptors.length >> 8];
  const u16 = (n: number): void => void parts.push(n & 0xff, n >> 8);
  const u32 = (n: number): void => void parts.push(n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, n >>> 24);
  const str = (s: string | Uint8Array): void => {
    const b = bytes(s);
    u16(b.length);
    parts.push(...b);
  };
  u32(id);
  u32(hitsAddend);
  str(domain);
  for (const d of descriptors) {
    u32(d.hitsAddend ?? HITS_UNSET);
    u16(d.entries.length);
    for (const [k, v] of d.entries) {
      str(k);
      str(v);
    }
  }
  return Uint8Array.from(parts);
}

interface Answer {
  code: number;
  id: number;
  context: number;
  statuses: { over: boolean; source: string; name: string; remaining: number; resetMs: number; retryAfterMs: number }[];
  headers: Record<string, string>;
  error?: { code: string; message: string };
}

/** The documented answer layout, read independently of the SDK. */
function answer(b: Uint8Array): Answer {
  const v = new DataView(b.buffer, b.byteOffset, b.length);
  const text = (at: number, n: number): string => new TextDecoder().decode(b.subarray(at, at + n));
  expect(b[0]).toBe(0x01);
  const out: Answer = { code: b[1]!, id: v.getUint32(4, true), context: v.getUint32(8, true), statuses: [], headers: {} };
  let at = 12;
  if (out.code === 2) {
    const cl = v.getUint16(at, true);
    const ml = v.getUint16(at + 2 + cl, true);
    out.error = { code: text(at + 2, cl), message: text(at + 4 + cl, ml) };
    expect(at + 4 + cl + ml).toBe(b.length);
    return out;
  }
  for (let i = 0; i < v.getUint16(2, true); i++) {
    const nl = v.getUint16(at + 2, true);
    out.statuses.push({
      over: b[at] === 1,
      source: DECISION_SOURCES[b[at + 1]!]!,
      remaining: v.getFloat64(at + 4, true),
      resetMs: v.getFloat64(at + 12, true),
      retryAfterMs: v.getFloat64(at + 20, true),
      name: text(at + 28, nl),
    });
    at += 28 + nl;
  }
  const n = v.getUint16(at, true);
  at += 2;
  for (let i = 0; i < n; i++) {
    const kl = b[at]!;
    const vl = v.getUint16(at + 1, true);
    out.headers[text(at + 3, kl)] = text(at + 3 + kl, vl);
    at += 3 + kl + vl;
  }
  expect(at).toBe(b.length);
  return out;
}

const ctx = { pluginName: 'p', contextId: 9 };

async function call(registry: ForeignFunctionRegistry, payload: Uint8Array): Promise<{ sync: boolean; answer: Answer }> {
  const r = registry.lookup(FOREIGN_FUNCTION_NAMES.shouldRateLimit)!.fn(payload, ctx);
  // The immediate answer is a view of a scratch buffer: copy it before the next call, as the host does.
  const sync = !(r instanceof Promise);
  return { sync, answer: answer((await r).slice()) };
}

async function json(registry: ForeignFunctionRegistry, payload: unknown): Promise<Record<string, unknown>> {
  const r = await registry.lookup(FOREIGN_FUNCTION_NAMES.shouldRateLimit)!.fn(new TextEncoder().encode(JSON.stringify(payload)), ctx);
  return JSON.parse(new TextDecoder().decode(r)) as Record<string, unknown>;
}

describe('binary rate-limit payloads', () => {
  it('decide as the JSON form does, with the same statuses and headers', async () => {
    // Two limiters side by side: one clock for both, so their windows' remaining times agree.
    vi.useFakeTimers({ toFake: ['performance', 'Date'], now: 1_800_000_000_123 });
    const bin = setup();
    const txt = setup();
    const descriptors: Descriptor[] = [{ entries: [['user', 'alice']] }, { entries: [['path', '/a"b']] }, { entries: [['other', 'x']] }];
    for (let i = 0; i < 3; i++) {
      const { sync, answer: a } = await call(bin, request(40 + i, 'api', descriptors));
      const j = await json(txt, { id: 40 + i, domain: 'api', hitsAddend: 1, descriptors: descriptors.map((d) => ({ entries: d.entries.map(([key, value]) => ({ key, value })) })) });
      expect(sync).toBe(true);
      expect(a.id).toBe(40 + i);
      expect(a.context).toBe(9);
      expect(a.code).toBe(j.code === 'OK' ? 0 : 1);
      expect(a.statuses).toEqual(
        (j.statuses as Record<string, unknown>[]).map((s) => ({
          over: s.code === 'OVER_LIMIT',
          source: s.source,
          name: s.name ?? '',
          remaining: s.remaining,
          resetMs: s.resetMs,
          retryAfterMs: s.retryAfterMs,
        })),
      );
      expect(a.headers).toEqual(j.headers);
    }
    const third = (await call(bin, request(1, 'api', [{ entries: [['user', 'alice']] }]))).answer;
    expect(third.code).toBe(1);
    expect(third.headers['retry-after']).toMatch(/^\d+$/);
    expect(third.headers['ratelimit-policy']).toBe('"per-user";q=2;w=60');
    vi.useRealTimers();
  });

  it('writes the headers rateLimitHeaders would, escapes and numbers included', async () => {
    const registry = setup();
    for (const [key, quota, windowMs] of [['big', 3_000_000_000, 86_400_000], ['mid', 1_000_000_000, 3_600_000]] as const) {
      const { answer: n } = await call(registry, request(1, 'api', [{ entries: [[key, 'v']] }]));
      const s = n.statuses[0]!;
      expect(n.headers).toEqual(rateLimitHeaders({ policyName: key, quota, windowMs, remaining: s.remaining, resetMs: s.resetMs, retryAfterMs: 0, overLimit: false }));
      expect(n.headers['ratelimit-policy']).toBe(`"${key}";q=${quota};w=${windowMs / 1000}`);
    }
    const { answer: a } = await call(registry, request(1, 'api', [{ entries: [['path', '/a"b']] }]));
    expect(a.statuses[0]!.name).toBe('api.path=/a"b');
    expect(a.headers).toEqual(
      rateLimitHeaders({ policyName: 'api.path=/a"b', quota: 5, windowMs: 1000, remaining: 4, resetMs: a.statuses[0]!.resetMs, retryAfterMs: 0, overLimit: false }),
    );
  });

  it('counts hitsAddend as the JSON form: 0 in the head means one hit, a descriptor own value wins', async () => {
    const registry = setup();
    expect((await call(registry, request(1, 'api', [{ entries: [['user', 'bob']] }], 0))).answer.statuses[0]!.remaining).toBe(1);
    expect((await call(registry, request(2, 'api', [{ entries: [['user', 'bob']], hitsAddend: 0 }], 5))).answer.statuses[0]!.remaining).toBe(1);
    expect((await call(registry, request(3, 'api', [{ entries: [['user', 'bob']] }], 2))).answer.code).toBe(1);
    expect((await call(registry, request(4, 'api', [{ entries: [['user', 'bob']] }], 1))).answer.statuses[0]!.remaining).toBe(0);
  });

  it('decodes values as UTF-8, invalid bytes as U+FFFD, so both spellings count against one counter', async () => {
    const registry = setup();
    expect((await call(registry, request(1, 'api', [{ entries: [['user', 'zoë\u00ff']] }]))).answer.statuses[0]!.remaining).toBe(1);
    expect((await call(registry, request(2, 'api', [{ entries: [['user', Uint8Array.from([0x7a, 0x6f, 0xc3, 0xab, 0xc3, 0xbf])]] }]))).answer.statuses[0]!.remaining).toBe(0);
    const bad = Uint8Array.from([0x61, 0xff, 0x62]);
    await call(registry, request(3, 'api', [{ entries: [['user', bad]] }]));
    expect((await call(registry, request(4, 'api', [{ entries: [['user', 'a\ufffdb']] }]))).answer.statuses[0]!.remaining).toBe(0);
    const long = 'x'.repeat(30) + 'é';
    await call(registry, request(5, 'api', [{ entries: [['user', long]] }]));
    expect((await call(registry, request(6, 'api', [{ entries: [['user', long]] }]))).answer.statuses[0]!.remaining).toBe(0);
  });

  it('counts a payload sent again on every call, and applies reloaded rules to it', async () => {
    const state = createSharedState(
      { backend: 'memory' },
      { metrics: new MetricsRegistry(), nodeName: 'n', logger: createLogger('binary'), rateLimits: [rateLimitDomainSchema.parse({ domain: 'api', descriptors: [{ name: 'u', entries: [{ key: 'user' }], requestsPerUnit: 2, unit: 'minute' }] })] },
    );
    states.push(state);
    const registry = new ForeignFunctionRegistry();
    registerSharedStateForeignFunctions(registry, state);
    const same = (id: number): Uint8Array => request(id, 'api', [{ entries: [['user', 'dan']] }]);
    const remaining: number[] = [];
    for (let id = 1; id <= 2; id++) remaining.push((await call(registry, same(id))).answer.statuses[0]!.remaining);
    expect(remaining).toEqual([1, 0]);
    state.update([rateLimitDomainSchema.parse({ domain: 'api', descriptors: [{ name: 'u5', entries: [{ key: 'user' }], requestsPerUnit: 5, unit: 'minute' }] })], circuitBreakersSchema.parse({}));
    const after = (await call(registry, same(4))).answer;
    expect(after).toMatchObject({ code: 0, id: 4 });
    expect(after.statuses[0]).toMatchObject({ name: 'u5', remaining: 2 });
    expect(after.headers['ratelimit-policy']).toBe('"u5";q=5;w=60');
    state.update([rateLimitDomainSchema.parse({ domain: 'api', descriptors: [{ entries: [{ key: 'path' }], requestsPerUnit: 1, unit: 'minute' }] })], circuitBreakersSchema.parse({}));
    expect((await call(registry, same(5))).answer.statuses[0]).toMatchObject({ source: 'no-rule', name: '' });
  });

  it('answers a deferred decision (a lease being fetched) in a buffer of its own, naming the call and context', async () => {
    const registry = setup();
    const first = await call(registry, request(77, 'api', [{ entries: [['l', 'k']] }]));
    expect(first.sync).toBe(false);
    expect(first.answer).toMatchObject({ code: 0, id: 77, context: 9 });
    expect(first.answer.statuses[0]).toMatchObject({ over: false, source: 'lease', name: 'leased' });
    expect((await call(registry, request(78, 'api', [{ entries: [['l', 'k']] }]))).sync).toBe(true);
  });

  it('answers malformed payloads with a binary error naming what is wrong, and keeps serving', async () => {
    const registry = setup();
    const good = request(5, 'api', [{ entries: [['user', 'carol']] }]);
    const cases: [Uint8Array, RegExp][] = [
      [Uint8Array.from([0x01, 0, 1, 0]), /shorter than its 14-byte head/],
      [Uint8Array.from([...good.subarray(0, 1), 7, ...good.subarray(2)]), /flags 0x7 are not supported/],
      [request(5, 'api', []), /descriptor count 0 is outside 1\.\.64/],
      [request(5, 'api', Array.from({ length: 65 }, () => ({ entries: [['user', 'x']] }))), /descriptor count 65/],
      [request(5, '', [{ entries: [['user', 'x']] }]), /domain must be non-empty/],
      [request(5, 'api', [{ entries: [] }]), /descriptor 0: entry count 0/],
      [request(5, 'api', [{ entries: [['', 'x']] }]), /descriptor 0 entry 0: the key must be non-empty/],
      [good.subarray(0, good.length - 2), /ends inside descriptor 0 entry 0's value/],
      [good.subarray(0, 20), /ends inside descriptor 0's head/],
      [good.subarray(0, 26), /ends inside descriptor 0 entry 0's key/],
      [Uint8Array.from([...good, 0]), /1 bytes follow the last descriptor/],
    ];
    for (const [payload, message] of cases) {
      const { sync, answer: a } = await call(registry, payload);
      expect(sync).toBe(true);
      expect(a.code).toBe(2);
      expect(a.error!.code).toBe('WEFT_ERR_BAD_REQUEST');
      expect(a.error!.message).toMatch(message);
      expect(a.id).toBe(payload.length >= 8 ? 5 : 0);
    }
    const after = (await call(registry, good)).answer;
    expect(after).toMatchObject({ code: 0, id: 5 });
    expect(after.statuses[0]).toMatchObject({ over: false, remaining: 1 });
    // The JSON form is untouched by all of this.
    expect(await json(registry, { domain: 'api', descriptors: [{ entries: [{ key: 'user', value: 'carol' }] }] })).toMatchObject({ code: 'OK' });
  });
});

describe('binary rate-limit payloads read in place', () => {
  /** What the host passes: the guest's whole memory, the payload somewhere inside it. */
  function memoryWith(payload: Uint8Array, at: number): Uint8Array {
    const mem = new Uint8Array(at + payload.length + 64).fill(0xee);
    mem.set(payload, at);
    return mem;
  }

  const inPlace = (registry: ForeignFunctionRegistry) => registry.lookup(FOREIGN_FUNCTION_NAMES.shouldRateLimit)!.inPlace!;

  it('answers a payload inside guest memory as the same payload on its own, and keeps a copy of it, not the memory', async () => {
    const registry = setup();
    const alice = request(11, 'api', [{ entries: [['user', 'alice']] }]);
    const bob = request(12, 'api', [{ entries: [['user', 'bob']] }]);
    const mem = memoryWith(alice, 37);
    const first = answer((await inPlace(registry)(mem, 37, alice.length, 'p', 9)).slice());
    expect(first).toMatchObject({ code: 0, id: 11, context: 9 });
    expect(first.statuses[0]).toMatchObject({ over: false, remaining: 1, name: 'per-user' });
    // The guest reuses its memory for the next request: what the cache kept must not change with it.
    mem.set(bob, 37);
    expect(answer((await inPlace(registry)(mem, 37, bob.length, 'p', 9)).slice()).statuses[0]).toMatchObject({ remaining: 1 });
    // alice again, elsewhere in memory and with another id: the same counter (her last token), then over.
    const again = memoryWith(request(13, 'api', [{ entries: [['user', 'alice']] }]), 3);
    expect(answer((await inPlace(registry)(again, 3, alice.length, 'p', 4)).slice())).toMatchObject({ code: 0, id: 13, context: 4 });
    expect((await call(registry, alice)).answer.code).toBe(1);
    expect((await call(registry, bob)).answer.statuses[0]).toMatchObject({ over: false, remaining: 0 });
  });

  it("keeps interleaved requests with different descriptors apart (each answer is its own request's)", async () => {
    // A frozen clock: the 5/second path limit cannot roll over between the calls.
    vi.useFakeTimers({ toFake: ['performance', 'Date'], now: 1_800_000_000_123 });
    const registry = setup();
    const a = request(1, 'api', [{ entries: [['user', 'ann']] }]);
    const b = request(2, 'api', [{ entries: [['user', 'ben']] }, { entries: [['path', '/a"b']] }]);
    const seen: [number, number[], string][] = [];
    for (let i = 0; i < 3; i++) {
      for (const p of [a, b]) {
        const r = (await call(registry, p)).answer;
        seen.push([r.id, r.statuses.map((s) => s.remaining), r.headers.ratelimit!]);
      }
    }
    expect(seen.map(([id, remaining]) => [id, remaining])).toEqual([
      [1, [1]], [2, [1, 4]],
      [1, [0]], [2, [0, 3]],
      // ben is over, the path descriptor is still counted (each descriptor is decided on its own, as in Envoy).
      [1, [0]], [2, [0, 2]],
    ]);
    expect(seen[0]![2]).toMatch(/^"per-user";r=1;t=\d+$/);
    expect(seen[3]![2]).toMatch(/^"per-user";r=0;t=\d+$/);
  });

  it('reads a JSON payload in place too', async () => {
    const registry = setup();
    const text = new TextEncoder().encode(JSON.stringify({ id: 3, domain: 'api', descriptors: [{ entries: [{ key: 'user', value: 'jo' }] }] }));
    const r = await inPlace(registry)(memoryWith(text, 100), 100, text.length, 'p', 8);
    expect(JSON.parse(new TextDecoder().decode(r))).toMatchObject({ id: 3, context: 8, code: 'OK', statuses: [{ remaining: 1 }] });
  });
});
