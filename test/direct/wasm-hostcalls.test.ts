// Every proxy-wasm hostcall driven through the generated probe plugin, with exact status codes for success and for
// each error path (bad pointers, unknown ids, unavailable maps/buffers, u32::MAX lengths, memory growth, i64 metrics).
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Status } from '../../runtime/wasm/abi-constants.js';
import { decodeHeaderMap, encodeHeaderMap, serializedSize } from '../../runtime/wasm/header-map-codec.js';
import { Cb } from '../helpers/wasm-fixtures.js';
import { type TestHost, SCRATCH, call, createTestHost, loadProbe, openStream, put, records, returned, u32 } from '../helpers/wasm-host.js';

const OUT = SCRATCH + 2048; // (ptr, len) out-words
const BAD = 0xfffffff0;
let t: TestHost;

afterEach(() => {
  t?.host.close();
  vi.useRealTimers();
});

describe('header map hostcalls', () => {
  it('get value joins repeated headers, lower-cases the key, and answers NOT_FOUND / BAD_ARGUMENT / INVALID_MEMORY_ACCESS', async () => {
    t = createTestHost();
    const vm = await loadProbe(t);
    const ctx = openStream(vm);
    ctx.requestHeaders = [[':path', '/x'], ['a', '1'], ['a', '2'], ['empty', '']];
    const get = (map: number, key: string): number => {
      const [kp, kl] = put(vm, SCRATCH, key);
      return call(vm, ctx, 'proxy_get_header_map_value', map, kp, kl, OUT, OUT + 4);
    };
    expect(get(0, 'A')).toBe(Status.Ok);
    expect(returned(vm, OUT).toString()).toBe('1, 2');
    expect(get(0, 'empty')).toBe(Status.Ok);
    expect(u32(vm, OUT)).toBe(0);
    expect(u32(vm, OUT + 4)).toBe(0);
    expect(get(0, 'missing')).toBe(Status.NotFound);
    expect(get(2, ':status')).toBe(Status.NotFound); // no response headers yet
    expect(get(99, 'a')).toBe(Status.BadArgument);
    expect(call(vm, ctx, 'proxy_get_header_map_value', 0, BAD, 4, OUT, OUT + 4)).toBe(Status.InvalidMemoryAccess);
    const [kp, kl] = put(vm, SCRATCH, 'a');
    expect(call(vm, ctx, 'proxy_get_header_map_value', 0, kp, kl, BAD, OUT + 4)).toBe(Status.InvalidMemoryAccess);
    // In the root context there is no request: NOT_FOUND rather than another stream's headers.
    expect(call(vm, vm.root, 'proxy_get_header_map_value', 0, kp, kl, OUT, OUT + 4)).toBe(Status.NotFound);
  });

  it('ABI 0.1.0: a missing header is OK and empty; proxy_get_configuration and proxy_continue_request work', async () => {
    t = createTestHost();
    const vm = await loadProbe(t, { config: '1' }, '0_1_0');
    expect(vm.compiled.abi).toBe('0.1.0');
    const ctx = openStream(vm);
    ctx.requestHeaders = [];
    const [kp, kl] = put(vm, SCRATCH, 'missing');
    expect(call(vm, ctx, 'proxy_get_header_map_value', 0, kp, kl, OUT, OUT + 4)).toBe(Status.Ok);
    expect(u32(vm, OUT + 4)).toBe(0);
    expect(call(vm, vm.root, 'proxy_get_configuration', OUT, OUT + 4)).toBe(Status.Ok);
    expect(returned(vm, OUT).toString()).toBe('1'); // after on_configure: the plugin configuration
    expect(call(vm, ctx, 'proxy_continue_request')).toBe(Status.Ok);
    expect(call(vm, vm.root, 'proxy_continue_response')).toBe(Status.NotFound);
    expect(call(vm, ctx, 'proxy_clear_route_cache')).toBe(Status.Ok);
  });

  it('add, replace and remove edit the caller’s array in place', async () => {
    t = createTestHost();
    const vm = await loadProbe(t);
    const ctx = openStream(vm);
    const headers: [string, string][] = [['x', '1'], ['y', 'a'], ['x', '2']];
    ctx.requestHeaders = headers;
    const kv = (k: string, v: string): [number, number, number, number] => {
      const [kp, kl] = put(vm, SCRATCH, k);
      const [vp, vl] = put(vm, SCRATCH + 256, v);
      return [kp, kl, vp, vl];
    };
    expect(call(vm, ctx, 'proxy_add_header_map_value', 0, ...kv('New-Header', 'v\xe9'))).toBe(Status.Ok);
    expect(call(vm, ctx, 'proxy_replace_header_map_value', 0, ...kv('x', 'only'))).toBe(Status.Ok);
    expect(headers).toEqual([['x', 'only'], ['y', 'a'], ['new-header', 'v\xe9']]);
    expect(call(vm, ctx, 'proxy_replace_header_map_value', 0, ...kv('z', ''))).toBe(Status.Ok);
    const [kp, kl] = put(vm, SCRATCH, 'Y');
    expect(call(vm, ctx, 'proxy_remove_header_map_value', 0, kp, kl)).toBe(Status.Ok);
    expect(call(vm, ctx, 'proxy_remove_header_map_value', 0, kp, kl)).toBe(Status.Ok); // absent is still OK
    expect(headers).toEqual([['x', 'only'], ['new-header', 'v\xe9'], ['z', '']]);
    expect(call(vm, ctx, 'proxy_add_header_map_value', 3, ...kv('t', '1'))).toBe(Status.NotFound); // no response trailers
    expect(call(vm, ctx, 'proxy_add_header_map_value', 0, BAD, 1, SCRATCH, 1)).toBe(Status.InvalidMemoryAccess);
  });

  it('get pairs / set pairs / size round-trip the serialization, with an empty map as (0, 0)', async () => {
    t = createTestHost();
    const vm = await loadProbe(t);
    const ctx = openStream(vm);
    const headers: [string, string][] = [[':method', 'GET'], ['dup', 'a'], ['dup', 'b'], ['empty', ''], ['bin', '\x00\xff\x80']];
    ctx.requestHeaders = headers;
    expect(call(vm, ctx, 'proxy_get_header_map_pairs', 0, OUT, OUT + 4)).toBe(Status.Ok);
    const bytes = returned(vm, OUT);
    expect(bytes.equals(encodeHeaderMap(headers))).toBe(true);
    expect(decodeHeaderMap(bytes)).toEqual(headers);
    expect(call(vm, ctx, 'proxy_get_header_map_size', 0, OUT + 8)).toBe(Status.Ok);
    expect(u32(vm, OUT + 8)).toBe(serializedSize(headers));

    const replacement = encodeHeaderMap([['A', '1'], ['b', '']]);
    const [p, l] = put(vm, SCRATCH, replacement);
    expect(call(vm, ctx, 'proxy_set_header_map_pairs', 0, p, l)).toBe(Status.Ok);
    // The pseudo-header the new map left out keeps its value (Kong's key-auth rebuilds the map without them).
    expect(headers).toEqual([[':method', 'GET'], ['a', '1'], ['b', '']]);
    const [rp, rl] = put(vm, SCRATCH, encodeHeaderMap([['c', '3'], [':method', 'POST']]));
    expect(call(vm, ctx, 'proxy_set_header_map_pairs', 0, rp, rl)).toBe(Status.Ok);
    expect(headers).toEqual([['c', '3'], [':method', 'POST']]);
    const [bp, bl] = put(vm, SCRATCH, Uint8Array.of(5, 0, 0, 0, 1, 0));
    expect(call(vm, ctx, 'proxy_set_header_map_pairs', 0, bp, bl)).toBe(Status.BadArgument);
    expect(call(vm, ctx, 'proxy_set_header_map_pairs', 0, BAD, 64)).toBe(Status.InvalidMemoryAccess);

    ctx.responseHeaders = [];
    expect(call(vm, ctx, 'proxy_get_header_map_pairs', 2, OUT, OUT + 4)).toBe(Status.Ok);
    expect([u32(vm, OUT), u32(vm, OUT + 4)]).toEqual([0, 0]);
  });

  it('keeps working when the guest allocator grows memory (the old views are detached)', async () => {
    t = createTestHost();
    const vm = await loadProbe(t);
    const ctx = openStream(vm);
    const big = 'v'.repeat(300_000); // larger than the probe's initial 3 pages
    ctx.requestHeaders = [['big', big]];
    const before = vm.mem.memory.buffer;
    const [kp, kl] = put(vm, SCRATCH, 'big');
    expect(call(vm, ctx, 'proxy_get_header_map_value', 0, kp, kl, OUT, OUT + 4)).toBe(Status.Ok);
    expect(vm.mem.memory.buffer).not.toBe(before);
    expect(before.byteLength).toBe(0); // detached by memory.grow
    expect(returned(vm, OUT).toString('latin1')).toBe(big);
    expect(call(vm, ctx, 'proxy_get_header_map_pairs', 0, OUT, OUT + 4)).toBe(Status.Ok);
    expect(decodeHeaderMap(returned(vm, OUT))).toEqual([['big', big]]);
  });
});

describe('buffer hostcalls', () => {
  it('reads configuration with u32::MAX meaning "all", clamps windows, and refuses unknown or absent buffers', async () => {
    t = createTestHost();
    const vm = await loadProbe(t, { config: { answer: 42 } });
    const ctx = openStream(vm);
    expect(call(vm, ctx, 'proxy_get_buffer_bytes', 7, 0, 0xffffffff, OUT, OUT + 4)).toBe(Status.Ok);
    expect(returned(vm, OUT).toString()).toBe('{"answer":42}');
    expect(call(vm, ctx, 'proxy_get_buffer_bytes', 7, 2, 6, OUT, OUT + 4)).toBe(Status.Ok);
    expect(returned(vm, OUT).toString()).toBe('answer');
    expect(call(vm, ctx, 'proxy_get_buffer_bytes', 7, 100, 5, OUT, OUT + 4)).toBe(Status.Ok);
    expect(u32(vm, OUT + 4)).toBe(0);
    expect(call(vm, ctx, 'proxy_get_buffer_bytes', 4, 0, 10, OUT, OUT + 4)).toBe(Status.NotFound); // no call response now
    expect(call(vm, ctx, 'proxy_get_buffer_bytes', 0, 0, 10, OUT, OUT + 4)).toBe(Status.NotFound); // no body yet
    expect(call(vm, ctx, 'proxy_get_buffer_bytes', 42, 0, 10, OUT, OUT + 4)).toBe(Status.BadArgument);
    expect(call(vm, ctx, 'proxy_get_buffer_bytes', 7, 0, 10, BAD, OUT + 4)).toBe(Status.InvalidMemoryAccess);
    expect(call(vm, ctx, 'proxy_get_buffer_status', 7, OUT, OUT + 4)).toBe(Status.Ok);
    expect([u32(vm, OUT), u32(vm, OUT + 4)]).toEqual([13, 0]);
  });

  it('set_buffer_bytes prepends, appends and replaces the body the plugin sees', async () => {
    t = createTestHost();
    const vm = await loadProbe(t);
    const ctx = openStream(vm);
    ctx.requestBody = Buffer.from('body');
    const set = (start: number, size: number, data: string): number => {
      const [p, l] = put(vm, SCRATCH, data);
      return call(vm, ctx, 'proxy_set_buffer_bytes', 0, start, size, p, l);
    };
    expect(set(0, 0, '<')).toBe(Status.Ok);
    expect(set(0xffffffff, 0, '>')).toBe(Status.Ok);
    expect(Buffer.from(ctx.requestBody).toString()).toBe('<body>');
    expect(set(1, 4, 'BODY')).toBe(Status.Ok);
    expect(Buffer.from(ctx.requestBody).toString()).toBe('<BODY>');
    expect(set(0, 0xffffffff, 'new')).toBe(Status.Ok);
    expect(Buffer.from(ctx.requestBody).toString()).toBe('new');
    expect(call(vm, ctx, 'proxy_set_buffer_bytes', 7, 0, 0, SCRATCH, 1)).toBe(Status.BadArgument); // configuration is read-only
    expect(call(vm, ctx, 'proxy_set_buffer_bytes', 1, 0, 0, SCRATCH, 1)).toBe(Status.NotFound); // no response body
    expect(call(vm, ctx, 'proxy_set_buffer_bytes', 0, 0, 0, BAD, 8)).toBe(Status.InvalidMemoryAccess);
  });
});

describe('properties', () => {
  it('accepts the three path framings and encodes strings, integers and maps as Envoy does', async () => {
    t = createTestHost({ nodeProperties: { 'node.id': 'node-a', 'node.metadata.CLUSTER_ID': 'Kubernetes' } });
    const vm = await loadProbe(t);
    const ctx = openStream(vm, {
      source: { address: '10.0.0.1', port: 4711, principal: 'spiffe://cluster.local/ns/a/sa/b' },
      destination: { address: '10.0.0.2', port: 80 },
      connection: { mtls: true, id: 7 },
      request: { protocol: 'HTTP/1.1' },
      properties: { route_name: 'r1' },
    });
    ctx.requestHeaders = [[':path', '/p?q=1'], [':method', 'POST'], [':authority', 'svc']];
    const get = (path: string): [number, Buffer] => {
      const [p, l] = put(vm, SCRATCH, path);
      const st = call(vm, ctx, 'proxy_get_property', p, l, OUT, OUT + 4);
      return [st, st === 0 ? returned(vm, OUT) : Buffer.alloc(0)];
    };
    for (const framing of ['request.path', 'request\0path', 'request\0path\0']) expect(get(framing)).toEqual([Status.Ok, Buffer.from('/p?q=1')]);
    expect(get('request.url_path')[1].toString()).toBe('/p');
    expect(get('request.query')[1].toString()).toBe('q=1');
    expect(get('request.method')[1].toString()).toBe('POST');
    expect(get('request.host')[1].toString()).toBe('svc');
    expect(get('source.address')[1].toString()).toBe('10.0.0.1:4711');
    expect(get('source\0port')[1].readBigInt64LE()).toBe(4711n);
    expect(get('source.principal')[1].toString()).toBe('spiffe://cluster.local/ns/a/sa/b');
    expect(get('connection.mtls')[1]).toEqual(Buffer.from([1]));
    expect(get('connection.id')[1].readBigInt64LE()).toBe(7n);
    // Istio's default root id is "" (no pluginName): C++ SDK filters register their root context for "".
    expect(get('plugin_root_id')).toEqual([Status.Ok, Buffer.alloc(0)]);
    expect(get('plugin_name')[1].toString()).toBe('probe');
    expect(get('plugin_vm_id')[1].toString()).toBe('probe');
    expect(get('node.metadata.CLUSTER_ID')[1].toString()).toBe('Kubernetes');
    expect(get('route_name')[1].toString()).toBe('r1');
    expect(decodeHeaderMap(get('request.headers')[1])).toEqual(ctx.requestHeaders);
    expect(get('no.such.thing')[0]).toBe(Status.NotFound);
    expect(call(vm, ctx, 'proxy_get_property', BAD, 4, OUT, OUT + 4)).toBe(Status.InvalidMemoryAccess);

    const [pp, pl] = put(vm, SCRATCH, 'my\0key');
    const [vp, vl] = put(vm, SCRATCH + 64, 'value');
    expect(call(vm, ctx, 'proxy_set_property', pp, pl, vp, vl)).toBe(Status.Ok);
    expect(get('my.key')[1].toString()).toBe('value');
    // In the root context (no stream) plugin_root_id still answers, request.* does not.
    const [rp, rl] = put(vm, SCRATCH, 'plugin_root_id');
    expect(call(vm, vm.root, 'proxy_get_property', rp, rl, OUT, OUT + 4)).toBe(Status.Ok);
    const [qp, ql] = put(vm, SCRATCH, 'request.path');
    expect(call(vm, vm.root, 'proxy_get_property', qp, ql, OUT, OUT + 4)).toBe(Status.NotFound);
  });
});

describe('plugin identity', () => {
  it('plugin_root_id follows pluginName (Istio), plugin_name and plugin_vm_id stay the configured name', async () => {
    t = createTestHost();
    const vm = await loadProbe(t, { pluginName: 'my_root' });
    const get = (path: string): string => {
      const [p, l] = put(vm, SCRATCH, path);
      expect(call(vm, vm.root, 'proxy_get_property', p, l, OUT, OUT + 4)).toBe(Status.Ok);
      return returned(vm, OUT).toString();
    };
    expect([get('plugin_root_id'), get('plugin_name'), get('plugin_vm_id')]).toEqual(['my_root', 'probe', 'probe']);
  });
});

describe('metrics', () => {
  it('defines counters, gauges and histograms, keeps i64 values exact as BigInt, and renders them for Prometheus', async () => {
    t = createTestHost();
    const vm = await loadProbe(t);
    const define = (type: number, name: string): number => {
      const [p, l] = put(vm, SCRATCH, name);
      expect(call(vm, vm.root, 'proxy_define_metric', type, p, l, OUT)).toBe(Status.Ok);
      return u32(vm, OUT);
    };
    const counter = define(0, 'requests.total;plugin=probe');
    const gauge = define(1, 'queue_depth');
    const histogram = define(2, 'latency_ms');
    expect(define(0, 'requests.total;plugin=probe')).toBe(counter); // same name, same metric
    const big = 2n ** 40n + 3n;
    expect(call(vm, vm.root, 'proxy_increment_metric', counter, big)).toBe(Status.Ok);
    expect(call(vm, vm.root, 'proxy_increment_metric', counter, 1n)).toBe(Status.Ok);
    expect(call(vm, vm.root, 'proxy_increment_metric', counter, -1n)).toBe(Status.BadArgument);
    expect(call(vm, vm.root, 'proxy_get_metric', counter, OUT)).toBe(Status.Ok);
    vm.mem.refresh();
    expect(vm.mem.view.getBigUint64(OUT, true)).toBe(big + 1n);
    expect(call(vm, vm.root, 'proxy_record_metric', gauge, 7n)).toBe(Status.Ok);
    expect(call(vm, vm.root, 'proxy_increment_metric', gauge, -2n)).toBe(Status.Ok);
    expect(call(vm, vm.root, 'proxy_get_metric', gauge, OUT)).toBe(Status.Ok);
    expect(vm.mem.view.getBigUint64(OUT, true)).toBe(5n);
    expect(call(vm, vm.root, 'proxy_record_metric', histogram, 12n)).toBe(Status.Ok);
    expect(call(vm, vm.root, 'proxy_increment_metric', histogram, 1n)).toBe(Status.BadArgument);
    expect(call(vm, vm.root, 'proxy_get_metric', histogram, OUT)).toBe(Status.BadArgument);
    expect(call(vm, vm.root, 'proxy_get_metric', 999, OUT)).toBe(Status.NotFound);
    const [p, l] = put(vm, SCRATCH, 'queue_depth');
    expect(call(vm, vm.root, 'proxy_define_metric', 0, p, l, OUT)).toBe(Status.BadArgument); // a counter under a gauge's name
    expect(call(vm, vm.root, 'proxy_define_metric', 9, p, l, OUT)).toBe(Status.BadArgument);
    const text = await t.metrics.render();
    expect(text).toContain(`requests_total_plugin_probe ${Number(big + 1n)}`);
    expect(text).toContain('queue_depth 5');
    expect(text).toContain('latency_ms_count 1');
    expect(text).toContain('weft_plugin_vm_starts_total{plugin="probe"} 1');
  });
});

describe('shared data and queues', () => {
  it('compare-and-swap: first write always wins, a stale CAS is refused', async () => {
    t = createTestHost();
    const vm = await loadProbe(t);
    const [kp, kl] = put(vm, SCRATCH, 'counter');
    const set = (value: string, cas: number): number => {
      const [vp, vl] = put(vm, SCRATCH + 64, value);
      return call(vm, vm.root, 'proxy_set_shared_data', kp, kl, vp, vl, cas);
    };
    const get = (): number => call(vm, vm.root, 'proxy_get_shared_data', kp, kl, OUT, OUT + 4, OUT + 8);
    expect(get()).toBe(Status.NotFound);
    expect(set('1', 0)).toBe(Status.Ok);
    expect(get()).toBe(Status.Ok);
    expect(returned(vm, OUT).toString()).toBe('1');
    const cas = u32(vm, OUT + 8);
    expect(cas).not.toBe(0);
    expect(set('2', cas)).toBe(Status.Ok);
    expect(set('3', cas)).toBe(Status.CasMismatch);
    expect(get()).toBe(Status.Ok);
    expect(returned(vm, OUT).toString()).toBe('2');
    expect(call(vm, vm.root, 'proxy_set_shared_data', BAD, 4, SCRATCH, 1, 0)).toBe(Status.InvalidMemoryAccess);
  });

  it('queues: register, resolve, enqueue wakes the owner with on_queue_ready, dequeue drains then says EMPTY', async () => {
    t = createTestHost();
    const vm = await loadProbe(t);
    const [np, nl] = put(vm, SCRATCH, 'jobs');
    expect(call(vm, vm.root, 'proxy_register_shared_queue', np, nl, OUT)).toBe(Status.Ok);
    const token = u32(vm, OUT);
    const [ep, el] = put(vm, SCRATCH + 32, '');
    expect(call(vm, vm.root, 'proxy_resolve_shared_queue', ep, el, np, nl, OUT)).toBe(Status.Ok);
    expect(u32(vm, OUT)).toBe(token);
    const [vp, vl] = put(vm, SCRATCH + 64, 'probe');
    expect(call(vm, vm.root, 'proxy_resolve_shared_queue', vp, vl, np, nl, OUT)).toBe(Status.Ok);
    const [op, ol] = put(vm, SCRATCH + 96, 'other-vm');
    expect(call(vm, vm.root, 'proxy_resolve_shared_queue', op, ol, np, nl, OUT)).toBe(Status.NotFound);
    const [ip, il] = put(vm, SCRATCH + 128, 'job-1');
    expect(call(vm, vm.root, 'proxy_enqueue_shared_queue', token, ip, il)).toBe(Status.Ok);
    expect(call(vm, vm.root, 'proxy_enqueue_shared_queue', 9999, ip, il)).toBe(Status.NotFound);
    await Promise.resolve();
    expect(records(vm).filter((r) => r[0] === Cb.queueReady)).toEqual([[Cb.queueReady, 1, token, 0]]);
    expect(returned(vm, 56).toString()).toBe('job-1'); // the probe dequeued it in on_queue_ready
    expect(call(vm, vm.root, 'proxy_dequeue_shared_queue', token, OUT, OUT + 4)).toBe(Status.Empty);
    expect(call(vm, vm.root, 'proxy_dequeue_shared_queue', 9999, OUT, OUT + 4)).toBe(Status.NotFound);
  });
});

describe('logging, time, ticks, contexts', () => {
  it('proxy_log reaches the plugin log; unknown levels are BAD_ARGUMENT; the log level is readable', async () => {
    t = createTestHost();
    const vm = await loadProbe(t);
    const [p, l] = put(vm, SCRATCH, 'héllo');
    put(vm, SCRATCH, Buffer.from('héllo'));
    expect(call(vm, vm.root, 'proxy_log', 2, p, Buffer.byteLength('héllo'))).toBe(Status.Ok);
    expect(t.logs.at(-1)).toEqual({ plugin: 'probe', level: 2, message: 'héllo' });
    expect(call(vm, vm.root, 'proxy_log', 9, p, l)).toBe(Status.BadArgument);
    expect(call(vm, vm.root, 'proxy_log', 2, BAD, 100)).toBe(Status.InvalidMemoryAccess);
    expect(call(vm, vm.root, 'proxy_get_log_level', OUT)).toBe(Status.Ok);
    expect(u32(vm, OUT)).toBeLessThanOrEqual(5);
  });

  it('current time is wall-clock nanoseconds', async () => {
    t = createTestHost();
    const vm = await loadProbe(t);
    expect(call(vm, vm.root, 'proxy_get_current_time_nanoseconds', OUT)).toBe(Status.Ok);
    const ns = vm.mem.view.getBigUint64(OUT, true);
    expect(Number(ns / 1_000_000n)).toBeGreaterThan(Date.now() - 5000);
    expect(Number(ns / 1_000_000n)).toBeLessThanOrEqual(Date.now() + 1);
  });

  it('tick period drives proxy_on_tick on the root context until set to 0', async () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    t = createTestHost();
    const vm = await loadProbe(t);
    expect(call(vm, vm.root, 'proxy_set_tick_period_milliseconds', 10)).toBe(Status.Ok);
    vi.advanceTimersByTime(35);
    expect(records(vm).filter((r) => r[0] === Cb.tick)).toEqual([[Cb.tick, 1, 0, 0], [Cb.tick, 1, 0, 0], [Cb.tick, 1, 0, 0]]);
    expect(call(vm, vm.root, 'proxy_set_tick_period_milliseconds', 0)).toBe(Status.Ok);
    vi.advanceTimersByTime(100);
    expect(records(vm).filter((r) => r[0] === Cb.tick)).toHaveLength(3);
  });

  it('set_effective_context accepts live ids only; proxy_done without a pending on_done is NOT_FOUND', async () => {
    t = createTestHost();
    const vm = await loadProbe(t);
    const ctx = openStream(vm);
    expect(call(vm, vm.root, 'proxy_set_effective_context', ctx.id)).toBe(Status.Ok);
    expect(call(vm, vm.root, 'proxy_set_effective_context', 12345)).toBe(Status.BadArgument);
    expect(call(vm, ctx, 'proxy_done')).toBe(Status.NotFound);
    expect(call(vm, vm.root, 'proxy_continue_stream', 0)).toBe(Status.NotFound);
    expect(call(vm, ctx, 'proxy_continue_stream', 2)).toBe(Status.Unimplemented);
    expect(call(vm, ctx, 'proxy_continue_stream', 7)).toBe(Status.BadArgument);
    expect(call(vm, ctx, 'proxy_close_stream', 9)).toBe(Status.BadArgument);
  });
});

describe('callouts', () => {
  it('proxy_http_call validates pseudo-headers, then delivers the response to the root context', async () => {
    const seen: { cluster: string; headers: [string, string][]; body: string; timeout: number }[] = [];
    t = createTestHost({
      httpCall: (cluster, headers, body, _trailers, timeout) => {
        seen.push({ cluster, headers, body: Buffer.from(body).toString(), timeout });
        return Promise.resolve({ headers: [[':status', '200'], ['x-answer', 'yes']], body: Buffer.from('pong'), trailers: [] });
      },
    });
    const vm = await loadProbe(t);
    const ctx = openStream(vm);
    const send = (headers: [string, string][]): number => {
      const [cp, cl] = put(vm, SCRATCH, 'auth-cluster');
      const [hp, hl] = put(vm, SCRATCH + 64, encodeHeaderMap(headers));
      const [bp, bl] = put(vm, SCRATCH + 512, 'ping');
      return call(vm, ctx, 'proxy_http_call', cp, cl, hp, hl, bp, bl, 0, 0, 500, OUT);
    };
    expect(send([[':method', 'GET'], [':path', '/']])).toBe(Status.BadArgument); // no :authority
    expect(send([[':method', 'GET'], [':path', '/check'], [':authority', 'auth']])).toBe(Status.Ok);
    const token = u32(vm, OUT);
    expect(seen).toEqual([{ cluster: 'auth-cluster', headers: [[':method', 'GET'], [':path', '/check'], [':authority', 'auth']], body: 'ping', timeout: 500 }]);
    await new Promise((r) => setImmediate(r));
    expect(records(vm).filter((r) => r[0] === Cb.httpCallResponse)).toEqual([[Cb.httpCallResponse, token, 2, 4]]);
    expect(returned(vm, 24).toString()).toBe('pong');
    expect(decodeHeaderMap(returned(vm, 32))).toEqual([[':status', '200'], ['x-answer', 'yes']]);
    expect(vm.pendingAsync).toBe(0);
  });

  it('a failed or unconfigured http call is reported as num_headers 0 / INTERNAL_FAILURE', async () => {
    t = createTestHost({ httpCall: () => Promise.reject(new Error('connect refused')) });
    const vm = await loadProbe(t);
    const [cp, cl] = put(vm, SCRATCH, 'c');
    const [hp, hl] = put(vm, SCRATCH + 64, encodeHeaderMap([[':method', 'GET'], [':path', '/'], [':authority', 'a']]));
    expect(call(vm, vm.root, 'proxy_http_call', cp, cl, hp, hl, 0, 0, 0, 0, 100, OUT)).toBe(Status.Ok);
    await new Promise((r) => setImmediate(r));
    expect(records(vm).filter((r) => r[0] === Cb.httpCallResponse)).toEqual([[Cb.httpCallResponse, u32(vm, OUT), 0, 0]]);
    t.host.close();
    t = createTestHost();
    const vm2 = await loadProbe(t);
    put(vm2, SCRATCH + 64, encodeHeaderMap([[':method', 'GET'], [':path', '/'], [':authority', 'a']]));
    expect(call(vm2, vm2.root, 'proxy_http_call', cp, cl, hp, hl, 0, 0, 0, 0, 100, OUT)).toBe(Status.InternalFailure);
  });

  it('foreign functions answer synchronously, or later through proxy_on_foreign_function; unknown names are NOT_FOUND', async () => {
    t = createTestHost();
    t.foreign.register('weft.echo_reversed', (args) => Uint8Array.from(args).reverse());
    let resolveLater: (b: Uint8Array) => void = () => undefined;
    const laterId = t.foreign.register('weft.later', () => new Promise<Uint8Array>((r) => (resolveLater = r)));
    const vm = await loadProbe(t);
    const ctx = openStream(vm);
    const invoke = (name: string, args: string): number => {
      const [np, nl] = put(vm, SCRATCH, name);
      const [ap, al] = put(vm, SCRATCH + 128, args);
      return call(vm, ctx, 'proxy_call_foreign_function', np, nl, ap, al, OUT, OUT + 4);
    };
    expect(invoke('weft.echo_reversed', 'abc')).toBe(Status.Ok);
    expect(returned(vm, OUT).toString()).toBe('cba');
    expect(invoke('weft.nope', '')).toBe(Status.NotFound);
    expect(invoke('weft.later', 'x')).toBe(Status.Ok);
    expect(u32(vm, OUT + 4)).toBe(0);
    resolveLater(Buffer.from('done'));
    await new Promise((r) => setImmediate(r));
    expect(records(vm).filter((r) => r[0] === Cb.foreignFunction)).toEqual([[Cb.foreignFunction, 1, laterId, 4]]);
    expect(returned(vm, 40).toString()).toBe('done');
  });
});
