/**
 * Measuring a plugin's steady-state allocations: a build with AssemblyScript's stub runtime (a bump allocator that
 * frees only its last block), whose heap pointer's advance across N requests is the bytes each request keeps, and the
 * page count of a release build's memory across many requests (flat when nothing leaks).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type EmulatorOptions, PluginEmulator } from './plugin-emulator.js';

/** A stub-runtime release build of the plugin in `pluginDir` (assembly/index.ts, asconfig.json); `remove` deletes it. */
export async function buildWithStubRuntime(pluginDir: string): Promise<{ wasm: string; remove: () => Promise<void> }> {
  // Loaded here only: the compiler is large, and this module is re-exported beside the emulator.
  const { default: asc } = await import('assemblyscript/asc');
  const dir = await mkdtemp(join(tmpdir(), 'weft-alloc-'));
  const wasm = join(dir, 'stub.wasm');
  const errors: string[] = [];
  const result = await asc.main(['assembly/index.ts', '--config', 'asconfig.json', '--target', 'release', '--runtime', 'stub', '--baseDir', pluginDir, '--outFile', wasm], {
    stdout: { write: () => true },
    stderr: { write: (c: string | Uint8Array) => void errors.push(String(c)) },
  });
  const remove = (): Promise<void> => rm(dir, { recursive: true, force: true });
  if (result.error !== null) {
    await remove();
    throw new Error(`${result.error.message}\n${errors.join('')}`);
  }
  return { wasm, remove };
}

function guestMemory(emu: PluginEmulator) {
  return emu.host.runtimeOf(emu.name)!.vm!.mem;
}

/**
 * Heap bytes each of `n` calls of `request` keeps in a stub-runtime build (whole bytes: the second probe's own block is
 * the only allocation outside the requests, and the floor drops its share). Warm the plugin up first.
 */
export function bytesKeptPerRequest(emu: PluginEmulator, n: number, request: () => void): number {
  const mem = guestMemory(emu);
  const before = mem.allocate(1);
  if (before <= 0) throw new Error('the guest allocator refused a probe block');
  for (let i = 0; i < n; i++) request();
  return Math.floor((mem.allocate(1) - before) / n);
}

/** The guest memory's growth in bytes over `n` calls of `request` (0 when the collector keeps the heap flat). */
export function memoryGrowth(emu: PluginEmulator, n: number, request: () => void): number {
  const mem = guestMemory(emu);
  mem.refresh();
  const size = mem.buf.length;
  for (let i = 0; i < n; i++) request();
  mem.refresh();
  return mem.buf.length - size;
}

/** Runs `check` on a fresh emulator of `options` after `warmUp` calls of `request` on it, then closes the emulator. */
export async function withWarmedEmulator(options: EmulatorOptions, warmUp: number, request: (emu: PluginEmulator) => void, check: (emu: PluginEmulator) => void): Promise<void> {
  const emu = await PluginEmulator.create(options);
  try {
    for (let i = 0; i < warmUp; i++) request(emu);
    check(emu);
  } finally {
    await emu.close();
  }
}
