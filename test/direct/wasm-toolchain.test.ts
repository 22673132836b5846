// Real toolchain output, not hand-written WAT: an AssemblyScript 0.28 plugin (incremental GC runtime, `env.abort`,
// `_initialize` reactor start, `proxy_on_memory_allocate`) compiled in the test and driven through the filter chain.
import asc from 'assemblyscript/asc';
import { afterEach, describe, expect, it } from 'vitest';
import type { FilterAction } from '../../runtime/wasm/filter-chain.js';
import { type TestHost, createTestHost, loadPlugin } from '../helpers/wasm-host.js';

const SOURCE = `
@external("env", "proxy_add_header_map_value")
declare function proxy_add_header_map_value(map: i32, kp: usize, kl: usize, vp: usize, vl: usize): i32;
@external("env", "proxy_get_buffer_bytes")
declare function proxy_get_buffer_bytes(t: i32, start: u32, max: u32, rp: usize, rl: usize): i32;

let greeting = "unset";

export function proxy_abi_version_0_2_1(): void {}
export function proxy_on_memory_allocate(size: usize): usize { return heap.alloc(size); }
export function proxy_on_context_create(id: u32, parent: u32): void {}
export function proxy_on_configure(id: u32, size: u32): bool {
  const slots = new ArrayBuffer(8);
  const p = changetype<usize>(slots);
  if (proxy_get_buffer_bytes(7, 0, 0xffffffff, p, p + 4) != 0) return false;
  greeting = String.UTF8.decodeUnsafe(load<usize>(p), load<u32>(p + 4));
  return greeting.length > 0;
}
export function proxy_on_request_headers(id: u32, n: u32, eos: u32): u32 {
  if (n > 5) throw new Error("too many headers: " + n.toString());
  const k = String.UTF8.encode("x-greeting");
  const v = String.UTF8.encode(greeting);
  proxy_add_header_map_value(0, changetype<usize>(k), k.byteLength, changetype<usize>(v), v.byteLength);
  return 0;
}
`;

let t: TestHost | undefined;
afterEach(() => t?.host.close());

describe('AssemblyScript toolchain output', () => {
  it('runs an asc-compiled plugin; its abort (a thrown Error) is a plugin failure with the message', async () => {
    const out = await asc.compileString({ 'plugin.ts': SOURCE }, { optimizeLevel: 2, runtime: 'incremental', exportStart: '_initialize' });
    expect(out.error).toBeNull();
    t = createTestHost();
    await loadPlugin(t, 'as', out.binary!, { config: 'héllo from AS' });
    const chain = t.host.createStream(['as']);
    const headers: [string, string][] = [[':path', '/']];
    expect(chain.onRequestHeaders(headers, true)).toEqual({ kind: 'continue' });
    expect(headers).toContainEqual(['x-greeting', Buffer.from('héllo from AS').toString('latin1')]);
    chain.done();

    const many = t.host.createStream(['as']);
    const action = many.onRequestHeaders(Array.from({ length: 6 }, (_, i): [string, string] => [`h${i}`, 'v']), true) as Extract<FilterAction, { kind: 'localResponse' }>;
    expect(action.kind).toBe('localResponse');
    expect(action.failure?.reason).toBe('abort');
    expect(action.failure?.message).toMatch(/abort: too many headers: 6 at plugin\.ts:\d+:\d+/);
    many.done();
    expect(t.host.createStream(['as']).onRequestHeaders([[':path', '/']], true)).toEqual({ kind: 'continue' });
  });

  it('runs top-level code from a start section (asc without --exportStart) that grows memory', async () => {
    const source = SOURCE.replace('let greeting = "unset";', 'const scratch = new ArrayBuffer(300000);\nlet greeting = "unset" + scratch.byteLength.toString();');
    const out = await asc.compileString({ 'plugin.ts': source }, { optimizeLevel: 2, runtime: 'incremental' });
    expect(out.error).toBeNull();
    t = createTestHost();
    const vm = await loadPlugin(t, 'as', out.binary!, { config: 'x' });
    expect(vm.mem.memory.buffer.byteLength).toBeGreaterThan(300000);
    const chain = t.host.createStream(['as']);
    const headers: [string, string][] = [[':path', '/']];
    expect(chain.onRequestHeaders(headers, true)).toEqual({ kind: 'continue' });
    expect(headers).toContainEqual(['x-greeting', 'x']);
    chain.done();
  });
});
