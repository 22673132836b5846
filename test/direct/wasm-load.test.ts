// Bad input at load time (not Wasm, truncated, no ABI marker, unknown or mistyped imports, traps in start, refused
// configuration, memory over the limit, checksum mismatch) is refused naming the plugin and the reason, and the running
// configuration keeps serving; a good new version replaces the old one without failing in-flight requests.
import { afterEach, describe, expect, it } from 'vitest';
import type { FilterAction } from '../../runtime/wasm/filter-chain.js';
import { sha256Hex } from '../../runtime/wasm/plugin-loader.js';
import { fixture, pluginConfig, probeModule, wasmFileUrl, wat } from '../helpers/wasm-fixtures.js';
import { type TestHost, call, createTestHost, records } from '../helpers/wasm-host.js';

let t: TestHost;
afterEach(() => t?.host.close());

async function refusal(bytes: Uint8Array, extra: Parameters<typeof pluginConfig>[2] = {}): Promise<string> {
  const result = await t.host.load([pluginConfig('victim', await wasmFileUrl(bytes), extra)]);
  expect(result.ok).toBe(false);
  if (result.ok) return '';
  expect(result.problems).toHaveLength(1);
  expect(result.problems[0]!.plugin).toBe('victim');
  return result.problems[0]!.reason;
}

describe('bad modules are refused with the reason', () => {
  it('not Wasm, truncated, a component', async () => {
    t = createTestHost();
    expect(await refusal(Buffer.from('#!/bin/sh\necho not wasm\n'))).toMatch(/bad magic number/);
    const good = await fixture('add-header');
    expect(await refusal(good.subarray(0, Math.floor(good.length / 2)))).toMatch(/truncated/);
    expect(await refusal(good.subarray(0, 5))).toMatch(/shorter than the 8-byte header/);
    expect(await refusal(Uint8Array.of(0, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00))).toMatch(/component/);
  });

  it('no ABI marker, no allocator, unknown import, mistyped import', async () => {
    t = createTestHost();
    expect(await refusal(await fixture('no-abi'))).toMatch(/no proxy_abi_version_\* marker/);
    expect(await refusal(await fixture('no-allocator'))).toMatch(/neither proxy_on_memory_allocate nor malloc/);
    expect(await refusal(await fixture('unknown-import'))).toMatch(/unknown host function env\.proxy_frobnicate/);
    const mistyped = await wat(`(module (import "env" "proxy_log" (func (param i32 i32) (result i32)))
      (memory (export "memory") 1) (func (export "malloc") (param i32) (result i32) (i32.const 0)) (func (export "proxy_abi_version_0_2_1")))`);
    expect(await refusal(mistyped)).toMatch(/env\.proxy_log with parameters \(i32, i32\); the ABI defines \(i32, i32, i32\)/);
    const wrongModule = await wat(`(module (import "sockets" "connect" (func))
      (memory (export "memory") 1) (func (export "malloc") (param i32) (result i32) (i32.const 0)) (func (export "proxy_abi_version_0_2_1")))`);
    expect(await refusal(wrongModule)).toMatch(/unknown module "sockets"/);
  });

  it('a trap in start, a refused configuration, a memory floor above the limit', async () => {
    t = createTestHost();
    expect(await refusal(await fixture('start-trap'))).toMatch(/start_failed.*_initialize.*unreachable/);
    expect(await refusal(await probeModule(), { config: '000000000' })).toMatch(/configure_failed.*proxy_on_configure returned false/);
    const big = await wat(`(module (memory (export "memory") 200) (func (export "malloc") (param i32) (result i32) (i32.const 0)) (func (export "proxy_abi_version_0_2_1")))`);
    expect(await refusal(big, { limits: { cpuMs: 50, memoryMb: 4 } })).toMatch(/memory starts at 200 pages.*limit of 64 pages/);
  });

  it('a sha256 that does not match the fetched module', async () => {
    t = createTestHost();
    const bytes = await fixture('add-header');
    expect(await refusal(bytes, { sha256: 'a'.repeat(64) })).toMatch(new RegExp(`sha256 mismatch.*configured a{64}, fetched module is ${sha256Hex(bytes)}`));
    const ok = await t.host.load([pluginConfig('victim', await wasmFileUrl(bytes), { sha256: sha256Hex(bytes) })]);
    expect(ok.ok).toBe(true);
  });
});

describe('reload', () => {
  it('a refused configuration leaves the running one serving, and lists every problem', async () => {
    t = createTestHost();
    const goodUrl = await wasmFileUrl(await fixture('add-header'));
    expect((await t.host.load([pluginConfig('add', goodUrl)])).ok).toBe(true);
    const result = await t.host.load([
      pluginConfig('add', goodUrl, { config: { changed: true } }),
      pluginConfig('broken', await wasmFileUrl(Buffer.from('nope'))),
      pluginConfig('missing', 'file:///nonexistent/plugin.wasm'),
    ]);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.problems.map((p) => p.plugin).sort()).toEqual(['broken', 'missing']);
    expect(t.host.has('broken')).toBe(false);
    expect(t.host.runtimeOf('add')!.config.config).toBeUndefined();
    const chain = t.host.createStream(['add']);
    const headers: [string, string][] = [[':path', '/']];
    expect(chain.onRequestHeaders(headers, true)).toEqual({ kind: 'continue' });
    expect(headers).toContainEqual(['x-wasm-filter', 'on']);
    chain.done();
    expect(await t.metrics.render()).toMatch(/weft_plugin_load_errors_total\{plugin="broken"\} 1/);
  });

  it('replace swaps versions with zero failed requests: in-flight streams finish on the old VM', async () => {
    t = createTestHost();
    const url = await wasmFileUrl(await probeModule());
    expect((await t.host.load([pluginConfig('probe', url, { config: '1000001' })])).ok).toBe(true);
    const oldVm = t.host.runtimeOf('probe')!.vm!;
    const inflight = t.host.createStream(['probe']);
    const paused = inflight.onRequestHeaders([[':path', '/old']], true);
    expect(paused.kind).toBe('pause');
    const notStarted = t.host.createStream(['probe']); // created before the swap, first event after it

    expect((await t.host.replace([pluginConfig('probe', url, { config: '0000001' })])).ok).toBe(true);
    const newVm = t.host.runtimeOf('probe')!.vm!;
    expect(newVm).not.toBe(oldVm);
    expect(oldVm.state).toBe('ready'); // still draining

    const fresh = t.host.createStream(['probe']);
    expect(fresh.onRequestHeaders([[':path', '/new']], true)).toEqual({ kind: 'continue' });
    fresh.done();
    expect(notStarted.onRequestHeaders([[':path', '/between']], true).kind).toBe('pause'); // old version's behaviour
    call(oldVm, oldVm.contexts.get(3)!, 'proxy_continue_stream', 0);
    notStarted.done();

    call(oldVm, oldVm.contexts.get(2)!, 'proxy_continue_stream', 0);
    expect(await (paused as { resume: Promise<FilterAction> }).resume).toEqual({ kind: 'continue' });
    inflight.onResponseHeaders([[':status', '200']], true);
    inflight.done();
    expect(records(oldVm).filter((r) => r[0] === 11)).toHaveLength(3); // on_delete for its streams, then the root's
    expect(oldVm.state).toBe('closed');
    expect(newVm.state).toBe('ready');
  });

  it('replace under continuous traffic: every request succeeds, both versions serve, the old VM closes when drained', async () => {
    t = createTestHost({
      httpCall: () => new Promise((resolve) => setImmediate(() => resolve({ headers: [[':status', '200'], ['x-auth', 'ok']], body: new Uint8Array(0), trailers: [] }))),
    });
    const url = await wasmFileUrl(await fixture('callout'));
    expect((await t.host.load([pluginConfig('auth', url, { config: 'v1' })])).ok).toBe(true);
    const v1 = t.host.runtimeOf('auth')!.vm!;
    let sent = 0;
    let failed = 0;
    const servedBy = new Set<unknown>();
    // Traffic runs until the swap has completed and 100 more requests went through: on a loaded machine the compile
    // and VM start of replace() can outlast any fixed request count.
    let stopAt = Infinity;
    const worker = async (): Promise<void> => {
      while (sent < stopAt) {
        sent++;
        const chain = t.host.createStream(['auth']);
        const headers: [string, string][] = [[':path', '/']];
        let action = chain.onRequestHeaders(headers, true);
        servedBy.add(t.host.runtimeOf('auth')!.vm);
        if (action.kind === 'pause') action = await action.resume;
        if (action.kind !== 'continue' || !headers.some(([k, v]) => k === 'x-auth-result' && v === 'ok')) failed++;
        chain.done();
      }
    };
    const workers = Array.from({ length: 10 }, () => worker());
    while (sent < 100) await new Promise((r) => setImmediate(r));
    expect((await t.host.replace([pluginConfig('auth', url, { config: 'v2' })])).ok).toBe(true);
    stopAt = sent + 100;
    await Promise.all(workers);
    expect(failed).toBe(0);
    expect(servedBy.size).toBe(2);
    expect(v1.state).toBe('closed');
    expect(t.host.runtimeOf('auth')!.vm!.activeStreams).toBe(0);
  });

  it('compiles a module once per memory limit and forgets modules no plugin uses any more', async () => {
    t = createTestHost();
    const a = await wasmFileUrl(await fixture('add-header'));
    const b = await wasmFileUrl(await fixture('callout'));
    expect((await t.host.load([pluginConfig('a1', a), pluginConfig('a2', a), pluginConfig('b', b)])).ok).toBe(true);
    expect(t.host.runtimeOf('a1')!.compiled).toBe(t.host.runtimeOf('a2')!.compiled);
    expect(t.host.compiledModules).toBe(2);
    expect((await t.host.load([pluginConfig('a1', a, { limits: { cpuMs: 50, memoryMb: 8 } })])).ok).toBe(true);
    expect(t.host.compiledModules).toBe(1);
  });

  it('an unchanged plugin keeps its VM across reloads; a removed one is retired', async () => {
    t = createTestHost();
    const a = await wasmFileUrl(await fixture('add-header'));
    expect((await t.host.load([pluginConfig('a', a), pluginConfig('b', a)])).ok).toBe(true);
    const vmA = t.host.runtimeOf('a')!.vm!;
    const vmB = t.host.runtimeOf('b')!.vm!;
    expect((await t.host.load([pluginConfig('a', a)])).ok).toBe(true);
    expect(t.host.runtimeOf('a')!.vm).toBe(vmA);
    expect(t.host.has('b')).toBe(false);
    expect(vmB.state).toBe('closed');
  });
});
