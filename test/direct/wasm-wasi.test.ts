// The WASI preview1 subset and toolchain conventions real SDK builds rely on: stdout/stderr to the plugin log, clocks,
// random, the plugin's own environment, proc_exit (0 ends _start, anything else fails the VM), AssemblyScript abort,
// `_start` commands and `proxy_on_memory_allocate` allocators.
import { afterEach, describe, expect, it } from 'vitest';
import { Errno } from '../../runtime/wasm/abi-constants.js';
import type { FilterAction } from '../../runtime/wasm/filter-chain.js';
import { pluginConfig, wasmFileUrl, wat } from '../helpers/wasm-fixtures.js';
import { type TestHost, SCRATCH, createTestHost, loadPlugin, put, u32 } from '../helpers/wasm-host.js';

let t: TestHost;
afterEach(() => t?.host.close());

const WASI = {
  fd_write: 'i32 i32 i32 i32',
  clock_time_get: 'i32 i64 i32',
  random_get: 'i32 i32',
  environ_sizes_get: 'i32 i32',
  environ_get: 'i32 i32',
  args_sizes_get: 'i32 i32',
  fd_prestat_get: 'i32 i32',
  path_open: 'i32 i32 i32 i32 i32 i64 i64 i32 i32',
  proc_exit: 'i32',
} as const;

async function wasiModule(body = '', allocator = 'malloc', start = '_initialize'): Promise<Uint8Array> {
  const imports = Object.entries(WASI)
    .map(([name, params]) => `(import "wasi_snapshot_preview1" "${name}" (func $${name} (param ${params}) ${name === 'proc_exit' ? '' : '(result i32)'}))`)
    .join('\n');
  const trampolines = Object.entries(WASI)
    .filter(([name]) => name !== 'proc_exit')
    .map(([name, params]) => {
      const ps = params.split(' ');
      return `(func (export "w_${name}") (param ${params}) (result i32) (call $${name} ${ps.map((_, i) => `(local.get ${i})`).join(' ')}))`;
    })
    .join('\n');
  return wat(`(module ${imports}
    (import "env" "abort" (func $abort (param i32 i32 i32 i32)))
    (memory (export "memory") 2)
    (global $heap (mut i32) (i32.const 65536))
    (func (export "${allocator}") (param $n i32) (result i32) (local $p i32)
      (local.set $p (global.get $heap)) (global.set $heap (i32.add (global.get $heap) (local.get $n))) (local.get $p))
    (func (export "proxy_abi_version_0_2_0"))
    (func (export "${start}") ${body})
    ${trampolines}
    (data (i32.const 512) "\\0e\\00\\00\\00b\\00o\\00o\\00m\\00!\\00!\\00!\\00")
    (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
      (call $abort (i32.const 516) (i32.const 0) (i32.const 12) (i32.const 3)) (i32.const 0))
    (func (export "exit_now") (call $proc_exit (i32.const 7)))
  )`);
}

describe('WASI subset', () => {
  it('fd_write goes to the plugin log; clocks, random and environ work; files are not there', async () => {
    t = createTestHost();
    const vm = await loadPlugin(t, 'wasi', await wasiModule(), { vmConfig: { env: { MODE: 'test', EMPTY: '' } } });
    const w = (name: string, ...args: (number | bigint)[]): number => vm.callExport(vm.root, `w_${name}`, args);
    const [tp, tl] = put(vm, SCRATCH + 512, 'hello from stdout\n');
    vm.mem.view.setUint32(SCRATCH, tp, true);
    vm.mem.view.setUint32(SCRATCH + 4, tl, true);
    expect(w('fd_write', 1, SCRATCH, 1, SCRATCH + 8)).toBe(Errno.Success);
    expect(u32(vm, SCRATCH + 8)).toBe(tl);
    expect(t.logs.at(-1)).toEqual({ plugin: 'wasi', level: 2, message: 'hello from stdout' });
    expect(w('fd_write', 2, SCRATCH, 1, SCRATCH + 8)).toBe(Errno.Success);
    expect(t.logs.at(-1)?.level).toBe(4);
    expect(w('fd_write', 5, SCRATCH, 1, SCRATCH + 8)).toBe(Errno.Badf);
    expect(w('fd_write', 1, 0xfffffff0, 1, SCRATCH + 8)).toBe(Errno.Fault);

    expect(w('clock_time_get', 0, 1000n, SCRATCH)).toBe(Errno.Success);
    const realtime = vm.mem.view.getBigUint64(SCRATCH, true);
    expect(Math.abs(Number(realtime / 1_000_000n) - Date.now())).toBeLessThan(5000);
    expect(w('clock_time_get', 1, 0n, SCRATCH)).toBe(Errno.Success);
    expect(w('clock_time_get', 9, 0n, SCRATCH)).toBe(Errno.Inval);

    vm.mem.u8.fill(0, SCRATCH, SCRATCH + 64);
    expect(w('random_get', SCRATCH, 64)).toBe(Errno.Success);
    expect(vm.mem.u8.subarray(SCRATCH, SCRATCH + 64).some((b) => b !== 0)).toBe(true);
    expect(w('random_get', SCRATCH, 65537)).toBe(Errno.Inval);

    expect(w('environ_sizes_get', SCRATCH, SCRATCH + 4)).toBe(Errno.Success);
    expect([u32(vm, SCRATCH), u32(vm, SCRATCH + 4)]).toEqual([2, 'MODE=test\0EMPTY=\0'.length]);
    expect(w('environ_get', SCRATCH + 16, SCRATCH + 64)).toBe(Errno.Success);
    expect(Buffer.from(vm.mem.u8.subarray(u32(vm, SCRATCH + 16), u32(vm, SCRATCH + 16) + 9)).toString()).toBe('MODE=test');
    expect(w('args_sizes_get', SCRATCH, SCRATCH + 4)).toBe(Errno.Success);
    expect([u32(vm, SCRATCH), u32(vm, SCRATCH + 4)]).toEqual([0, 0]);
    expect(w('fd_prestat_get', 3, SCRATCH)).toBe(Errno.Badf); // no preopened directories
    expect(w('path_open', 3, 0, SCRATCH, 4, 0, 0n, 0n, 0, SCRATCH)).toBe(Errno.Notcapable);
  });

  it('proc_exit outside start fails the VM; AssemblyScript abort is a plugin failure with its message', async () => {
    t = createTestHost();
    const vm = await loadPlugin(t, 'wasi', await wasiModule());
    expect(() => vm.callExport(vm.root, 'exit_now', [])).toThrow(/proc_exit\(7\)/);
    expect(vm.state).toBe('failed');
    const chain = t.host.createStream(['wasi']);
    const action = chain.onRequestHeaders([[':path', '/']], true) as Extract<FilterAction, { kind: 'localResponse' }>;
    expect(action.kind).toBe('localResponse');
    expect(action.failure?.reason).toBe('abort');
    expect(action.failure?.message).toMatch(/abort: boom!!! at :12:3/);
    chain.done();
  });

  it('a `_start` command may end with proc_exit(0); any other exit code refuses the load', async () => {
    t = createTestHost();
    const ok = await wasiModule('(call $proc_exit (i32.const 0))', 'proxy_on_memory_allocate', '_start');
    expect((await t.host.load([pluginConfig('cmd', await wasmFileUrl(ok))])).ok).toBe(true);
    expect(t.host.runtimeOf('cmd')!.vm!.state).toBe('ready');
    const bad = await wasiModule('(call $proc_exit (i32.const 2))', 'proxy_on_memory_allocate', '_start');
    const r = await t.host.load([pluginConfig('cmd2', await wasmFileUrl(bad))]);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.problems[0]!.reason).toMatch(/start_failed.*proc_exit\(2\)/);
  });
});
