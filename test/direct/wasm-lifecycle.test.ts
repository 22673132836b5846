// Stream lifecycle through the filter chain, asserted against the probe's callback records: order and arguments,
// pause and resume, StopIterationAndBuffer, local responses, reset, proxy_done, multi-plugin order, callouts, eviction.
import { afterEach, describe, expect, it } from 'vitest';
import type { FilterAction } from '../../runtime/wasm/filter-chain.js';
import { Cb, fixture, pluginConfig, probeModule, wasmFileUrl } from '../helpers/wasm-fixtures.js';
import { type TestHost, SCRATCH, call, createTestHost, loadPlugin, loadProbe, put, records } from '../helpers/wasm-host.js';

let t: TestHost;
afterEach(() => t?.host.close());

const body = (a: FilterAction): string => (a.kind === 'continue' && a.body !== undefined ? Buffer.from(a.body).toString() : `<${a.kind}>`);

describe('stream lifecycle', () => {
  it('runs start, root and stream callbacks in cpp-host order with end_of_stream and sizes', async () => {
    t = createTestHost();
    const vm = await loadProbe(t, { config: '0000001' });
    const chain = t.host.createStream(['probe']);
    const req: [string, string][] = [[':method', 'POST'], [':path', '/']];
    expect(chain.onRequestHeaders(req, false)).toEqual({ kind: 'continue' });
    expect(body(chain.onRequestBody(Buffer.from('abc'), false))).toBe('abc');
    expect(body(chain.onRequestBody(Buffer.from('de'), true))).toBe('de');
    expect(chain.onResponseHeaders([[':status', '200']], true)).toEqual({ kind: 'continue' });
    chain.done();
    chain.done(); // idempotent
    expect(records(vm)).toEqual([
      [Cb.initialize, 0, 0, 0],
      [Cb.contextCreate, 1, 0, 0],
      [Cb.vmStart, 1, 0, 0],
      [Cb.configure, 1, 7, 0],
      [Cb.contextCreate, 2, 1, 0],
      [Cb.requestHeaders, 2, 2, 0],
      [Cb.requestBody, 2, 3, 0],
      [Cb.requestBody, 2, 2, 1],
      [Cb.responseHeaders, 2, 1, 1],
      [Cb.done, 2, 0, 0],
      [Cb.log, 2, 0, 0],
      [Cb.delete, 2, 0, 0],
    ]);
    expect(vm.activeStreams).toBe(0);
    expect(vm.contexts.has(2)).toBe(false);
  });

  it('a non-zero header status pauses until proxy_continue_stream, then the next plugin runs', async () => {
    t = createTestHost();
    const probe = await probeModule();
    const a = await wasmFileUrl(probe);
    const r = await t.host.load([pluginConfig('first', a, { config: '1' }), pluginConfig('second', a, { config: '0' })]);
    expect(r.ok).toBe(true);
    const vmA = t.host.runtimeOf('first')!.vm!;
    const vmB = t.host.runtimeOf('second')!.vm!;
    const chain = t.host.createStream(['first', 'second']);
    const action = chain.onRequestHeaders([[':path', '/']], true);
    expect(action.kind).toBe('pause');
    expect(records(vmB).some((x) => x[0] === Cb.requestHeaders)).toBe(false);
    const ctx = vmA.contexts.get(2)!;
    expect(call(vmA, ctx, 'proxy_continue_stream', 0)).toBe(0);
    expect(await (action as { resume: Promise<FilterAction> }).resume).toEqual({ kind: 'continue' });
    expect(records(vmB).filter((x) => x[0] === Cb.requestHeaders)).toEqual([[Cb.requestHeaders, 2, 1, 1]]);
    // Responses run through the plugins in reverse order.
    chain.onResponseHeaders([[':status', '204']], true);
    const firstResp = records(vmA).findIndex((x) => x[0] === Cb.responseHeaders);
    expect(firstResp).toBeGreaterThan(0);
    chain.done();
  });

  it('StopIterationAndBuffer accumulates chunks and releases them, modified, on Continue', async () => {
    t = createTestHost();
    const vm = await loadProbe(t, { config: '01' }); // request body: StopIterationAndBuffer
    const chain = t.host.createStream(['probe']);
    chain.onRequestHeaders([[':path', '/']], false);
    expect(chain.onRequestBody(Buffer.from('hel'), false)).toEqual({ kind: 'buffer' });
    expect(chain.onRequestBody(Buffer.from('lo'), false)).toEqual({ kind: 'buffer' });
    const bodies = records(vm).filter((x) => x[0] === Cb.requestBody);
    expect(bodies).toEqual([[Cb.requestBody, 2, 3, 0], [Cb.requestBody, 2, 5, 0]]); // body_size is cumulative
    const action = chain.onRequestBody(Buffer.from('!'), true);
    expect(action.kind).toBe('pause'); // stopped at end of stream: waits for proxy_continue_stream
    const ctx = vm.contexts.get(2)!;
    const [p, l] = put(vm, SCRATCH, '>');
    expect(call(vm, ctx, 'proxy_set_buffer_bytes', 0, 0xffffffff, 0, p, l)).toBe(0);
    expect(call(vm, ctx, 'proxy_continue_stream', 0)).toBe(0);
    expect(body(await (action as { resume: Promise<FilterAction> }).resume)).toBe('hello!>');
    chain.done();
  });

  it('trailers release a held body before the trailer callbacks', async () => {
    t = createTestHost();
    const vm = await loadProbe(t, { config: '010' });
    const chain = t.host.createStream(['probe']);
    chain.onRequestHeaders([[':path', '/']], false);
    expect(chain.onRequestBody(Buffer.from('held'), false)).toEqual({ kind: 'buffer' });
    const trailers: [string, string][] = [['grpc-status', '0']];
    expect(body(chain.onRequestTrailers(trailers))).toBe('held');
    expect(records(vm).filter((x) => x[0] === Cb.requestTrailers)).toEqual([[Cb.requestTrailers, 2, 1, 0]]);
    chain.done();
  });

  it('proxy_send_local_response ends the stream with the plugin’s response and ignores the callback result', async () => {
    t = createTestHost();
    const vm = await loadProbe(t, { config: '1' });
    const chain = t.host.createStream(['probe']);
    const action = chain.onRequestHeaders([[':path', '/']], true);
    expect(action.kind).toBe('pause');
    const ctx = vm.contexts.get(2)!;
    const hdrs = Buffer.from('\x01\x00\x00\x00\x05\x00\x00\x00\x03\x00\x00\x00x-why\x00yes\x00', 'latin1');
    const [hp, hl] = put(vm, SCRATCH, hdrs);
    const [bp, bl] = put(vm, SCRATCH + 128, 'go away');
    const [dp, dl] = put(vm, SCRATCH + 256, 'denied_by_probe');
    expect(call(vm, ctx, 'proxy_send_local_response', 403, dp, dl, bp, bl, hp, hl, -1)).toBe(0);
    const final = await (action as { resume: Promise<FilterAction> }).resume;
    expect(final).toMatchObject({ kind: 'localResponse', response: { status: 403, headers: [['x-why', 'yes']], details: 'denied_by_probe', grpcStatus: undefined, plugin: 'probe' } });
    expect(Buffer.from((final as { response: { body: Uint8Array } }).response.body).toString()).toBe('go away');
    expect(chain.onResponseHeaders([[':status', '403']], true)).toBe(final); // the stream stays ended
    chain.done();
    expect(records(vm).filter((x) => x[0] === Cb.log)).toHaveLength(1);
  });

  it('proxy_close_stream resets; on_done returning false defers on_log/on_delete until proxy_done', async () => {
    t = createTestHost();
    const vm = await loadProbe(t, { config: '1000000' }); // on_done (position 6) returns 0
    const chain = t.host.createStream(['probe']);
    const action = chain.onRequestHeaders([[':path', '/']], true);
    const ctx = vm.contexts.get(2)!;
    expect(call(vm, ctx, 'proxy_close_stream', 0)).toBe(0);
    expect(await (action as { resume: Promise<FilterAction> }).resume).toEqual({ kind: 'reset', plugin: 'probe' });
    chain.done();
    expect(records(vm).filter((x) => x[0] === Cb.log)).toHaveLength(0);
    expect(vm.activeStreams).toBe(1);
    expect(call(vm, ctx, 'proxy_done')).toBe(0);
    await Promise.resolve();
    expect(records(vm).slice(-3).map((x) => x[0])).toEqual([Cb.done, Cb.log, Cb.delete]);
    expect(vm.activeStreams).toBe(0);
  });
});

describe('callouts in a stream', () => {
  it('pauses on an http call, resumes as the origin stream with the verdict added (effective context)', async () => {
    t = createTestHost({
      httpCall: (cluster) => Promise.resolve({ headers: [[':status', '200'], ['x-auth', `ok-from-${cluster}`]], body: new Uint8Array(0), trailers: [] }),
    });
    await loadPlugin(t, 'callout', await fixture('callout'));
    const chain = t.host.createStream(['callout']);
    const req: [string, string][] = [[':path', '/']];
    const action = chain.onRequestHeaders(req, true);
    expect(action.kind).toBe('pause');
    expect(await (action as { resume: Promise<FilterAction> }).resume).toEqual({ kind: 'continue' });
    expect(req).toEqual([[':path', '/'], ['x-auth-result', 'ok-from-auth']]);
    chain.done();
  });

  it('answers 403 locally when the callout fails', async () => {
    t = createTestHost({ httpCall: () => Promise.reject(new Error('unreachable')) });
    await loadPlugin(t, 'callout', await fixture('callout'));
    const chain = t.host.createStream(['callout']);
    const action = chain.onRequestHeaders([[':path', '/']], true);
    const final = await (action as { resume: Promise<FilterAction> }).resume;
    expect(final).toMatchObject({ kind: 'localResponse', response: { status: 403 } });
    chain.done();
  });
});

describe('VM lifecycle', () => {
  it('instantiates lazily after eviction and evicts only idle VMs', async () => {
    t = createTestHost();
    await loadPlugin(t, 'add', await fixture('add-header'));
    const rt = t.host.runtimeOf('add')!;
    const chain = t.host.createStream(['add']);
    chain.onRequestHeaders([[':path', '/']], true);
    expect(t.host.sweepIdle(performance.now() + 10_000, 1000)).toBe(0); // a stream is open
    chain.done();
    expect(t.host.sweepIdle(performance.now() + 10_000, 1000)).toBe(1);
    expect(rt.vm).toBeUndefined();
    const again = t.host.createStream(['add']);
    const req: [string, string][] = [[':path', '/']];
    expect(again.onRequestHeaders(req, true)).toEqual({ kind: 'continue' });
    expect(req).toContainEqual(['x-wasm-filter', 'on']);
    expect(rt.vm?.state).toBe('ready');
    again.done();
    const text = await t.metrics.render();
    expect(text).toContain('weft_plugin_vm_starts_total{plugin="add"} 2');
    expect(text).toContain('weft_plugin_vm_evictions_total{plugin="add"} 1');
  });

  it('createStream refuses a plugin that is not loaded', () => {
    t = createTestHost();
    expect(() => t.host.createStream(['ghost'])).toThrow(/no plugin named "ghost"/);
  });
});

describe('ending a stream early', () => {
  it('done() while paused settles the pause as a reset and later events touch no plugin', async () => {
    t = createTestHost();
    const vm = await loadProbe(t, { config: '1000001' });
    const chain = t.host.createStream(['probe']);
    const action = chain.onRequestHeaders([[':path', '/']], false);
    expect(action.kind).toBe('pause');
    chain.done(); // the client went away
    expect(await (action as { resume: Promise<FilterAction> }).resume).toEqual({ kind: 'reset', plugin: '' });
    expect(chain.onRequestBody(Buffer.from('late'), true)).toEqual({ kind: 'reset', plugin: '' });
    expect(vm.activeStreams).toBe(0);
    expect(records(vm).filter((r) => r[0] === Cb.requestBody)).toHaveLength(0);
    expect(records(vm).slice(-3).map((r) => r[0])).toEqual([Cb.done, Cb.log, Cb.delete]);
  });
});
