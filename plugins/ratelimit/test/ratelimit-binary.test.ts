// ratelimit on the wire: the binary payload it sends (decoded by the host's own decoder), and what it does when the
// host answers a binary error, an answer it cannot read, or a deferred binary answer.
import { fileURLToPath } from 'node:url';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { setLogLevel } from '../../../runtime/log.js';
import { decodeRateLimitBinary, encodeRateLimitError } from '../../../runtime/shared-state/rate-limit-binary.js';
import type { RateLimitRequest } from '../../../runtime/shared-state/rate-limiter.js';
import { ForeignFunctionRegistry } from '../../../runtime/wasm/foreign-function.js';
import type { StreamInfo } from '../../../runtime/wasm/stream-info.js';
import { PluginEmulator, ensurePluginBuilt } from '../../../sdk/testing/index.js';

setLogLevel('error', 'ratelimit-binary-test');
const PLUGIN_DIR = fileURLToPath(new URL('..', import.meta.url));
const SHOULD_RATE_LIMIT = 'weft.ratelimit.should_rate_limit';
let wasm: string;
let emu: PluginEmulator | undefined;

beforeAll(async () => {
  wasm = await ensurePluginBuilt(PLUGIN_DIR);
});

afterEach(async () => {
  await emu?.close();
  emu = undefined;
});

const ALICE: StreamInfo = { source: { address: '10.1.2.3', port: 40000, principal: 'spiffe://cluster.local/ns/default/sa/alice' } };

function send(e: PluginEmulator, headers: Record<string, string> = {}) {
  const s = e.stream(ALICE);
  const r = s.sendRequestHeaders({ ':method': 'GET', ':path': '/api/items', ':authority': 'api', ...headers }, true);
  return { s, r };
}

/** A host whose limiter answers `answer(payload)` and records what the plugin asked. */
function host(answer: (payload: Uint8Array) => Uint8Array | Promise<Uint8Array>): { registry: ForeignFunctionRegistry; asked: { id: number; request: RateLimitRequest }[] } {
  const registry = new ForeignFunctionRegistry();
  const asked: { id: number; request: RateLimitRequest }[] = [];
  registry.register(SHOULD_RATE_LIMIT, (payload) => {
    asked.push(decodeRateLimitBinary(payload, 64, 32));
    return answer(payload);
  });
  return { registry, asked };
}

/** An allowed answer with one status and the two RateLimit headers, in the documented layout. */
function allowed(id: number): Uint8Array {
  return decision(id, false, 0);
}

/** A decision with one status (over the limit: retry after `retryAfterMs`) and the RateLimit headers. */
function decision(id: number, over: boolean, retryAfterMs: number): Uint8Array {
  const enc = new TextEncoder();
  const name = enc.encode('r');
  const headers: [Uint8Array, Uint8Array][] = [
    [enc.encode('ratelimit-policy'), enc.encode('"r";q=5;w=1')],
    [enc.encode('ratelimit'), enc.encode('"r";r=4;t=1')],
  ];
  const b = new Uint8Array(12 + 28 + name.length + 2 + headers.reduce((n, [k, v]) => n + 3 + k.length + v.length, 0));
  const v = new DataView(b.buffer);
  b[0] = 1;
  b[1] = over ? 1 : 0;
  v.setUint16(2, 1, true);
  v.setUint32(4, id, true);
  let at = 12;
  b[at] = over ? 1 : 0;
  v.setUint16(at + 2, name.length, true);
  v.setFloat64(at + 4, over ? 0 : 4, true);
  v.setFloat64(at + 12, 1000, true);
  v.setFloat64(at + 20, retryAfterMs, true);
  b.set(name, at + 28);
  at += 28 + name.length;
  v.setUint16(at, headers.length, true);
  at += 2;
  for (const [k, x] of headers) {
    b[at] = k.length;
    v.setUint16(at + 1, x.length, true);
    b.set(k, at + 3);
    b.set(x, at + 3 + k.length);
    at += 3 + k.length + x.length;
  }
  return b;
}

const idOf = (payload: Uint8Array): number => new DataView(payload.buffer, payload.byteOffset).getUint32(4, true);

describe('ratelimit binary payloads', () => {
  it('sends its descriptors in the binary form: literal, header, address and property entries, incomplete ones left out', async () => {
    const h = host((p) => allowed(idOf(p)));
    const config = {
      domain: 'api',
      descriptors: [
        [{ key: 'generic_key', value: 'all' }],
        [{ key: 'user', fromHeader: 'X-User' }, { key: 'remote_address', from: 'remoteAddress' }],
        [{ key: 'missing', fromHeader: 'x-none' }],
        [{ key: 'method', from: 'method' }, { key: 'principal', from: 'principal' }],
      ],
    };
    emu = await PluginEmulator.create({ wasm, config, foreignFunctions: h.registry });
    // Header values are bytes (a latin1 string here): these are the UTF-8 bytes of "zoë", which the limiter reads as text.
    const { s, r } = send(emu, { 'x-user': Buffer.from('zoë').toString('latin1') });
    expect(r.action).toBe('continue');
    expect(h.asked).toHaveLength(1);
    expect(h.asked[0]!.request).toEqual({
      domain: 'api',
      hitsAddend: 1,
      descriptors: [
        { entries: [{ key: 'generic_key', value: 'all' }] },
        { entries: [{ key: 'user', value: 'zoë' }, { key: 'remote_address', value: '10.1.2.3' }] },
        { entries: [{ key: 'method', value: 'GET' }, { key: 'principal', value: 'spiffe://cluster.local/ns/default/sa/alice' }] },
      ],
    });
    s.sendResponseHeaders({ ':status': '200' });
    expect(s.responseHeader('ratelimit-policy')).toBe('"r";q=5;w=1');
    expect(s.responseHeader('ratelimit')).toBe('"r";r=4;t=1');
    // Ids are never reused: the next request is a new call.
    send(emu, { 'x-user': 'bob' });
    expect(h.asked[1]!.id).not.toBe(h.asked[0]!.id);
  });

  it('treats a binary error answer as a limiter error: allowed by default, 500 with failureMode deny', async () => {
    const h = host((p) => encodeRateLimitError(idOf(p), 0, 'WEFT_ERR_BAD_REQUEST', 'descriptor 0: something is off'));
    const config = { domain: 'api', descriptors: [[{ key: 'user', fromHeader: 'x-user' }]] };
    emu = await PluginEmulator.create({ wasm, config, foreignFunctions: h.registry });
    const { s, r } = send(emu, { 'x-user': 'a' });
    expect(r.action).toBe('continue');
    expect(emu.logs.some((l) => l.message.includes('ratelimit: limiter error: descriptor 0: something is off; allowing'))).toBe(true);
    s.sendResponseHeaders({ ':status': '200' });
    expect(s.responseHeader('ratelimit')).toBeUndefined();
    expect((await emu.reconfigure({ ...config, failureMode: 'deny' })).ok).toBe(true);
    expect(send(emu, { 'x-user': 'a' }).s.localResponse?.status).toBe(500);
    expect(await emu.metricValue('ratelimit_plugin_errors_total')).toBe(2);
  });

  it.each([
    ['a JSON answer (a host without the binary form)', new TextEncoder().encode('{"error":"payload is not UTF-8 JSON","code":"WEFT_ERR_BAD_REQUEST"}')],
    ['a truncated answer', allowed(0).subarray(0, 30)],
    ['an unknown answer code', Uint8Array.from([1, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])],
  ])('does not trust %s: logged as undecided, the request allowed by default', async (_what, bad) => {
    const h = host(() => bad);
    emu = await PluginEmulator.create({ wasm, config: { domain: 'api', descriptors: [[{ key: 'k', value: 'v' }]] }, foreignFunctions: h.registry });
    const { s, r } = send(emu);
    expect(r.action).toBe('continue');
    expect(emu.logs.some((l) => l.message.includes('limiter error: the host answered no decision'))).toBe(true);
    s.sendResponseHeaders({ ':status': '200' });
    expect(s.responseHeader('ratelimit')).toBeUndefined();
  });

  it('delays on a deferred over-limit answer and asks again with the same request, whatever was sent meanwhile', async () => {
    let calls = 0;
    const pending: ((b: Uint8Array) => void)[] = [];
    const h = host((p) => {
      calls++;
      // The first call waits (a lease being fetched) and is then over the limit for 50 ms; the rest are allowed at once.
      if (calls === 1) return new Promise<Uint8Array>((resolve) => pending.push((b) => resolve(b)));
      return allowed(idOf(p));
    });
    const config = { domain: 'api', descriptors: [[{ key: 'user', fromHeader: 'x-user' }]], strategy: 'delay', maxDelayMs: 1000 };
    emu = await PluginEmulator.create({ wasm, config, foreignFunctions: h.registry });
    const first = send(emu, { 'x-user': 'first' });
    expect(first.r.action).toBe('pause');
    expect(send(emu, { 'x-user': 'second' }).r.action).toBe('continue');
    pending[0]!(decision(h.asked[0]!.id, true, 50));
    expect((await first.r.resume!).action).toBe('continue');
    expect(h.asked).toHaveLength(3);
    expect(h.asked[2]!.request).toEqual(h.asked[0]!.request);
    expect(h.asked[2]!.request.descriptors[0]!.entries[0]!.value).toBe('first');
    expect(h.asked[2]!.id).not.toBe(h.asked[0]!.id);
    expect(await emu.metricValue('ratelimit_plugin_delayed_total')).toBe(1);
  });

  it('applies a deferred binary answer to the request that asked', async () => {
    let release: (() => void) | undefined;
    const h = host((p) => new Promise<Uint8Array>((resolve) => (release = () => resolve(allowed(idOf(p))))));
    emu = await PluginEmulator.create({ wasm, config: { domain: 'api', descriptors: [[{ key: 'k', value: 'v' }]] }, foreignFunctions: h.registry });
    const { s, r } = send(emu);
    expect(r.action).toBe('pause');
    release!();
    expect((await r.resume!).action).toBe('continue');
    s.sendResponseHeaders({ ':status': '200' });
    expect(s.responseHeader('ratelimit-policy')).toBe('"r";q=5;w=1');
    expect(await emu.metricValue('ratelimit_plugin_allowed_total')).toBe(1);
  });
});
