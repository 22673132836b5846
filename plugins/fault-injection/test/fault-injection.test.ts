// fault-injection through the emulator: delays (paused and resumed from the plugin's tick), aborts, both, percentages,
// gRPC aborts, a stream that ends while delayed, and bad configurations refused with the previous one kept.
import { fileURLToPath } from 'node:url';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { PluginEmulator, ensurePluginBuilt } from '../../../sdk/testing/index.js';

const PLUGIN_DIR = fileURLToPath(new URL('..', import.meta.url));
const REQUEST = { ':method': 'GET', ':path': '/ratings/1', ':authority': 'ratings' };
let wasm: string;
let emu: PluginEmulator | undefined;

beforeAll(async () => {
  wasm = await ensurePluginBuilt(PLUGIN_DIR);
});

afterEach(async () => {
  await emu?.close();
  emu = undefined;
});

describe('fault-injection', () => {
  it('delays every request by fixedDelay when the percentage is 100, then lets it through', async () => {
    emu = await PluginEmulator.create({ wasm, config: { delay: { fixedDelay: '60ms', percentage: { value: 100 } } } });
    const s = emu.stream();
    const started = performance.now();
    const r = s.sendRequestHeaders(REQUEST, true);
    expect(r.action).toBe('pause');
    const resumed = await r.resume!;
    const waited = performance.now() - started;
    expect(resumed.action).toBe('continue');
    expect(waited).toBeGreaterThanOrEqual(55);
    expect(waited).toBeLessThan(2000);
    s.end();
    expect(await emu.metricValue('fault_injection_delays_total')).toBe(1);
  });

  it('aborts with the configured status and counts it', async () => {
    emu = await PluginEmulator.create({ wasm, config: { abort: { httpStatus: 503, percentage: 100 } } });
    const s = emu.stream();
    expect(s.sendRequestHeaders(REQUEST, true).action).toBe('localResponse');
    expect([s.localResponse?.status, s.localResponseText, s.localResponse?.details]).toEqual([503, 'fault filter abort', 'fault_filter_abort']);
    s.end();
    expect(await emu.metricValue('fault_injection_aborts_total')).toBe(1);
  });

  it('delays first, then aborts, like Envoy', async () => {
    emu = await PluginEmulator.create({ wasm, config: { delay: { fixedDelayMs: 20 }, abort: { httpStatus: 429 } } });
    const s = emu.stream();
    const r = s.sendRequestHeaders(REQUEST, true);
    expect(r.action).toBe('pause');
    expect((await r.resume!).action).toBe('localResponse');
    expect(s.localResponse?.status).toBe(429);
    s.end();
  });

  it('answers gRPC requests with the configured grpc-status', async () => {
    emu = await PluginEmulator.create({ wasm, config: { abort: { grpcStatus: 'UNAVAILABLE', percentage: 100 } } });
    const s = emu.stream();
    s.sendRequestHeaders({ ':method': 'POST', ':path': '/pkg.Svc/Call', ':authority': 'svc', 'content-type': 'application/grpc' }, false);
    expect(s.localResponse?.status).toBe(200);
    expect(s.localResponse?.grpcStatus).toBe(14);
    s.end();
  });

  it('injects nothing at 0 % and about half at 50 %', async () => {
    emu = await PluginEmulator.create({ wasm, config: { abort: { httpStatus: 500, percentage: 0 } } });
    const run = (n: number): number => {
      let aborted = 0;
      for (let i = 0; i < n; i++) {
        const s = emu!.stream();
        if (s.sendRequestHeaders(REQUEST, true).action === 'localResponse') aborted++;
        s.end();
      }
      return aborted;
    };
    expect(run(200)).toBe(0);
    expect((await emu.reconfigure({ abort: { httpStatus: 500, percentage: 50 } })).ok).toBe(true);
    const n = run(1000);
    // Binomial(1000, 0.5): 400..600 is more than 6 standard deviations wide.
    expect(n).toBeGreaterThan(400);
    expect(n).toBeLessThan(600);
  });

  it('forgets a delayed request whose stream ends first; others still resume', async () => {
    emu = await PluginEmulator.create({ wasm, config: { delay: { fixedDelay: '30ms' } } });
    const gone = emu.stream();
    expect(gone.sendRequestHeaders(REQUEST, true).action).toBe('pause');
    gone.end();
    const kept = emu.stream();
    const r = kept.sendRequestHeaders(REQUEST, true);
    expect((await r.resume!).action).toBe('continue');
    kept.end();
    expect(emu.vm.state).toBe('ready');
  });

  it.each([
    ['not JSON', 'delay 5s'],
    ['an unknown field', { delay: { fixedDelay: '1s' }, retry: {} }],
    ['a bad duration', { delay: { fixedDelay: '5 minutes' } }],
    ['a delay over 600 s', { delay: { fixedDelay: '601s' } }],
    ['a percentage over 100', { abort: { httpStatus: 500, percentage: { value: 101 } } }],
    ['an abort without a status', { abort: { percentage: 10 } }],
    ['an unknown gRPC code', { abort: { grpcStatus: 'NOPE' } }],
  ])('rejects %s and keeps the previous configuration', async (_what, bad) => {
    emu = await PluginEmulator.create({ wasm, config: { abort: { httpStatus: 418 } } });
    expect((await emu.reconfigure(bad)).ok).toBe(false);
    expect(emu.logs.some((l) => l.message.startsWith('fault-injection: rejected configuration:'))).toBe(true);
    const s = emu.stream();
    s.sendRequestHeaders(REQUEST, true);
    expect(s.localResponse?.status).toBe(418);
    s.end();
  });
});
