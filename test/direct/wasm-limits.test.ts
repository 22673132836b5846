// CPU budget, memory cap and failStrategy: a runaway, memory-hungry, trapping or exiting plugin is stopped, the request
// gets the configured outcome, later requests get a fresh VM, and other plugins' requests in flight are untouched.
import { afterEach, describe, expect, it } from 'vitest';
import type { PluginConfig } from '../../runtime/config/config-schema.js';
import { type FilterAction, WEFT_ERROR_HEADER } from '../../runtime/wasm/filter-chain.js';
import { PluginFailure } from '../../runtime/wasm/plugin-failure.js';
import { fixture, pluginConfig, wasmFileUrl } from '../helpers/wasm-fixtures.js';
import { type TestHost, createTestHost, loadPlugin, loadProbe } from '../helpers/wasm-host.js';

let t: TestHost;
afterEach(() => t?.host.close());

async function misbehaving(extra: Partial<PluginConfig>): Promise<void> {
  await loadPlugin(t, 'bad', await fixture('misbehave'), extra);
}

function request(name: string, header?: string): { action: FilterAction; ms: number } {
  const chain = t.host.createStream([name]);
  const headers: [string, string][] = [[':path', '/']];
  if (header !== undefined) headers.push([header, '1']);
  const start = performance.now();
  const action = chain.onRequestHeaders(headers, true);
  const ms = performance.now() - start;
  chain.done();
  return { action, ms };
}

function expect503(action: FilterAction, reason: string): void {
  expect(action.kind).toBe('localResponse');
  if (action.kind !== 'localResponse') return;
  expect(action.response.status).toBe(503);
  expect(action.response.headers).toContainEqual([WEFT_ERROR_HEADER, 'WEFT_ERR_PLUGIN_FAILED']);
  expect(action.failure).toBeInstanceOf(PluginFailure);
  expect(action.failure?.reason).toBe(reason);
}

describe('CPU budget', () => {
  it('stops an infinite loop within the budget, answers 503 (FAIL_CLOSE), and the next request gets a fresh VM', async () => {
    t = createTestHost();
    await misbehaving({ limits: { cpuMs: 30, memoryMb: 16 } });
    const before = t.host.runtimeOf('bad')!.vm;
    const { action, ms } = request('bad', 'x-spin');
    expect503(action, 'cpu_budget');
    expect(ms).toBeGreaterThanOrEqual(30);
    expect(ms).toBeLessThan(300);
    const next = request('bad');
    expect(next.action).toEqual({ kind: 'continue' });
    expect(t.host.runtimeOf('bad')!.vm).not.toBe(before);
    const text = await t.metrics.render();
    expect(text).toContain('weft_plugin_vm_failures_total{plugin="bad",reason="cpu_budget"} 1');
    expect(text).toContain('weft_plugin_stream_failures_total{plugin="bad",reason="cpu_budget",fail_strategy="FAIL_CLOSE"} 1');
  });

  it('stops a loop that wraps itself in try/catch_all (the stop is a trap, which the guest cannot catch)', async () => {
    t = createTestHost();
    await misbehaving({ limits: { cpuMs: 20, memoryMb: 16 } });
    const { action, ms } = request('bad', 'x-catch');
    expect503(action, 'cpu_budget');
    expect(ms).toBeLessThan(300);
  });

  it('leaves the event loop free for other traffic: a timer due during the runaway fires right after the budget', async () => {
    t = createTestHost();
    await misbehaving({ limits: { cpuMs: 25, memoryMb: 16 } });
    const scheduled = performance.now();
    const fired = new Promise<number>((resolve) => setTimeout(() => resolve(performance.now() - scheduled), 1));
    request('bad', 'x-spin');
    expect(await fired).toBeLessThan(250);
  });
});

describe('memory cap', () => {
  it('refuses growth past limits.memoryMb; the trap that follows is reported as memory_limit', async () => {
    t = createTestHost();
    await misbehaving({ limits: { cpuMs: 200, memoryMb: 4 } });
    const vm = t.host.runtimeOf('bad')!.vm!;
    const { action } = request('bad', 'x-hog');
    expect503(action, 'memory_limit');
    expect(vm.mem.memory.buffer.byteLength).toBeLessThanOrEqual(4 * 1024 * 1024);
    expect(vm.state).toBe('failed');
  });
});

describe('failStrategy', () => {
  it('FAIL_OPEN skips the plugin for the rest of the stream and continues', async () => {
    t = createTestHost();
    await misbehaving({ failStrategy: 'FAIL_OPEN' });
    const chain = t.host.createStream(['bad']);
    expect(chain.onRequestHeaders([[':path', '/'], ['x-trap', '1']], false)).toEqual({ kind: 'continue' });
    expect(chain.onRequestBody(Buffer.from('x'), true)).toEqual({ kind: 'continue', body: Buffer.from('x') });
    expect(chain.onResponseHeaders([[':status', '200']], true)).toEqual({ kind: 'continue' });
    chain.done();
    expect(await t.metrics.render()).toContain('weft_plugin_stream_failures_total{plugin="bad",reason="trap",fail_strategy="FAIL_OPEN"} 1');
  });

  it('FAIL_RELOAD fails this request closed and has a fresh VM ready before the next one', async () => {
    t = createTestHost();
    await misbehaving({ failStrategy: 'FAIL_RELOAD' });
    const rt = t.host.runtimeOf('bad')!;
    const first = rt.vm;
    expect503(request('bad', 'x-trap').action, 'trap');
    await new Promise((r) => setImmediate(r));
    expect(rt.vm).toBeDefined();
    expect(rt.vm).not.toBe(first);
    expect(rt.vm!.state).toBe('ready');
    expect(request('bad').action).toEqual({ kind: 'continue' });
  });

  it('proc_exit and unbounded recursion are plugin failures, never host crashes', async () => {
    t = createTestHost();
    await misbehaving({});
    expect503(request('bad', 'x-exit').action, 'proc_exit');
    expect503(request('bad', 'x-deep').action, 'trap');
    expect(request('bad').action).toEqual({ kind: 'continue' });
  });

  it('a VM failure wakes streams paused in it, so they fail per strategy instead of hanging', async () => {
    t = createTestHost();
    const vm = await loadProbe(t, { config: '1' });
    const chain = t.host.createStream(['probe']);
    const action = chain.onRequestHeaders([[':path', '/']], true);
    expect(action.kind).toBe('pause');
    vm.fail(new WebAssembly.RuntimeError('simulated trap from another stream'));
    const final = await (action as { resume: Promise<FilterAction> }).resume;
    expect503(final, 'trap');
    chain.done();
  });
});

describe('isolation', () => {
  it('requests through other plugins, paused across the failure, complete normally', async () => {
    const pending: (() => void)[] = [];
    t = createTestHost({
      httpCall: () =>
        new Promise((resolve) => pending.push(() => resolve({ headers: [[':status', '200'], ['x-auth', 'ok']], body: new Uint8Array(0), trailers: [] }))),
    });
    const calloutUrl = await wasmFileUrl(await fixture('callout'));
    const badUrl = await wasmFileUrl(await fixture('misbehave'));
    const loaded = await t.host.load([
      pluginConfig('callout', calloutUrl),
      pluginConfig('bad', badUrl, { limits: { cpuMs: 20, memoryMb: 16 } }),
    ]);
    expect(loaded.ok).toBe(true);
    const inflight = Array.from({ length: 20 }, () => {
      const chain = t.host.createStream(['callout']);
      const headers: [string, string][] = [[':path', '/']];
      const a = chain.onRequestHeaders(headers, true);
      return { chain, headers, a };
    });
    expect(inflight.every((r) => r.a.kind === 'pause')).toBe(true);
    expect503(request('bad', 'x-spin').action, 'cpu_budget');
    expect503(request('bad', 'x-trap').action, 'trap');
    for (const resolve of pending) resolve();
    for (const r of inflight) {
      expect(await (r.a as { resume: Promise<FilterAction> }).resume).toEqual({ kind: 'continue' });
      expect(r.headers).toContainEqual(['x-auth-result', 'ok']);
      r.chain.done();
    }
    expect(t.host.runtimeOf('callout')!.vm!.state).toBe('ready');
  });
});
