// A PluginHost wired for tests (fresh metrics and foreign-function registries, plugin logs captured), plus small
// helpers to poke at a VM's memory and open stream contexts without the L7 path.
import type { PluginConfig } from '../../runtime/config/config-schema.js';
import { createLogger, setLogLevel } from '../../runtime/log.js';
import { MetricsRegistry } from '../../runtime/telemetry/metrics-registry.js';
import { ForeignFunctionRegistry } from '../../runtime/wasm/foreign-function.js';
import { type PluginHostOptions, PluginHost } from '../../runtime/wasm/plugin-host.js';
import type { PluginVm } from '../../runtime/wasm/plugin-vm.js';
import { StreamContext } from '../../runtime/wasm/stream-context.js';
import type { StreamInfo } from '../../runtime/wasm/stream-info.js';
import { pluginConfig, probeModule, wasmFileUrl } from './wasm-fixtures.js';

export interface TestHost {
  host: PluginHost;
  metrics: MetricsRegistry;
  foreign: ForeignFunctionRegistry;
  logs: { plugin: string; level: number; message: string }[];
}

export function createTestHost(options: Partial<PluginHostOptions> = {}): TestHost {
  const metrics = options.metrics ?? new MetricsRegistry();
  const foreign = options.foreignFunctions ?? new ForeignFunctionRegistry();
  const logs: TestHost['logs'] = [];
  // Expected plugin failures would otherwise print a warning line each; tests assert on results and `logs` instead.
  setLogLevel('error', 'wasm-test');
  const host = new PluginHost({ idleMs: 0, logger: createLogger('wasm-test'), ...options, metrics, foreignFunctions: foreign, pluginLog: (plugin, level, message) => logs.push({ plugin, level, message }) });
  return { host, metrics, foreign, logs };
}

/** Loads `bytes` as plugin `name` and returns its started VM. */
export async function loadPlugin(t: TestHost, name: string, bytes: Uint8Array, extra: Partial<PluginConfig> = {}): Promise<PluginVm> {
  const result = await t.host.load([pluginConfig(name, await wasmFileUrl(bytes), extra)]);
  if (!result.ok) throw new Error(result.problems.map((p) => `${p.plugin}: ${p.reason}`).join('; '));
  return t.host.runtimeOf(name)!.vm!;
}

export async function loadProbe(t: TestHost, extra: Partial<PluginConfig> = {}, abi = '0_2_1'): Promise<PluginVm> {
  return loadPlugin(t, 'probe', await probeModule(abi), extra);
}

export function openStream(vm: PluginVm, info: StreamInfo = {}): StreamContext {
  return StreamContext.open(vm, info);
}

/** Scratch area tests write arguments into (below the probe's record area). */
export const SCRATCH = 1024;

export function put(vm: PluginVm, addr: number, data: string | Uint8Array): [number, number] {
  const bytes = typeof data === 'string' ? Buffer.from(data, 'latin1') : data;
  vm.mem.refresh();
  vm.mem.u8.set(bytes, addr);
  return [addr, bytes.length];
}

export function u32(vm: PluginVm, addr: number): number {
  vm.mem.refresh();
  return vm.mem.view.getUint32(addr, true);
}

/** The bytes a hostcall returned through (ptr, len) out-words at `slot` and `slot + 4`. */
export function returned(vm: PluginVm, slot: number): Buffer {
  const ptr = u32(vm, slot);
  const len = u32(vm, slot + 4);
  return Buffer.from(vm.mem.u8.slice(ptr, ptr + len));
}

/** Callback records of the probe: [code, a, b, c] entries. */
export function records(vm: PluginVm): [number, number, number, number][] {
  const end = (vm.exports.rec_end as () => number)();
  const out: [number, number, number, number][] = [];
  for (let p = 65536; p < end; p += 16) out.push([u32(vm, p), u32(vm, p + 4), u32(vm, p + 8), u32(vm, p + 12)]);
  return out;
}

export function call(vm: PluginVm, ctx: Parameters<PluginVm['callExport']>[0], hostcall: string, ...args: (number | bigint)[]): number {
  return vm.callExport(ctx, `call_${hostcall}`, args);
}
