// proxy-wasm host benchmark: per-request host overhead of a header-mutating filter, the cost of CPU-budget
// instrumentation on compute-heavy code, cold start of a 2.5 MB plugin and warm instantiate. Numbers, never assertions.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { setLogLevel } from '../../runtime/log.js';
import { MetricsRegistry } from '../../runtime/telemetry/metrics-registry.js';
import { ForeignFunctionRegistry } from '../../runtime/wasm/foreign-function.js';
import { PluginHost } from '../../runtime/wasm/plugin-host.js';
import { compilePlugin } from '../../runtime/wasm/plugin-loader.js';
import { PRELUDE, pluginConfig, wat } from '../helpers/wasm-fixtures.js';

const ADD_HEADER = `(module
  (import "env" "proxy_replace_header_map_value" (func $replace (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  ${PRELUDE}
  (func (export "proxy_abi_version_0_2_1"))
  (data (i32.const 256) "x-wasm-filter") (data (i32.const 288) "on") (data (i32.const 320) "x-served-by") (data (i32.const 352) "weft-wasm")
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $replace (i32.const 0) (i32.const 256) (i32.const 13) (i32.const 288) (i32.const 2))) (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (drop (call $add (i32.const 2) (i32.const 320) (i32.const 11) (i32.const 352) (i32.const 9))) (i32.const 0))
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_log") (param i32))
  (func (export "proxy_on_delete") (param i32)))`;

/** FNV-1a over 64 KiB of memory, `rounds` times, plus a call per round: loop-heavy code typical of body scanning. */
const COMPUTE = `(module
  ${PRELUDE}
  (func (export "proxy_abi_version_0_2_1"))
  (func $mix (param $h i32) (param $b i32) (result i32) (i32.mul (i32.xor (local.get $h) (local.get $b)) (i32.const 16777619)))
  (func (export "work") (param $rounds i32) (result i32) (local $h i32) (local $i i32)
    (local.set $h (i32.const 0x811c9dc5))
    (loop $round
      (local.set $i (i32.const 0))
      (loop $byte
        (local.set $h (call $mix (local.get $h) (i32.load8_u offset=131072 (local.get $i))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $byte (i32.lt_u (local.get $i) (i32.const 65536))))
      (local.set $rounds (i32.sub (local.get $rounds) (i32.const 1)))
      (br_if $round (i32.gt_s (local.get $rounds) (i32.const 0))))
    (local.get $h)))`;

/**
 * A module of about `bytes` bytes of code: many distinct functions reachable through a table (as a big Go or C++
 * filter's are), with the few exports a real plugin has.
 */
function bigModule(bytes: number): string {
  const fns: string[] = [];
  const body = Array.from({ length: 40 }, (_, i) => `(local.set $x (i32.add (i32.mul (local.get $x) (i32.const ${i + 3})) (i32.const ${i})))`).join(' ');
  const perFn = 40 * 10 + 12;
  for (let i = 0; i * perFn < bytes; i++) fns.push(`(func $f${i} (param $x i32) (result i32) ${body} (local.get $x))`);
  return `(module ${PRELUDE} (func (export "proxy_abi_version_0_2_1")) (func (export "proxy_on_context_create") (param i32 i32))
    (table ${fns.length} funcref) (elem (i32.const 0) ${fns.map((_, i) => `$f${i}`).join(' ')})
    (func (export "dispatch") (param $i i32) (result i32) (call_indirect (param i32) (result i32) (local.get $i) (local.get $i)))
    ${fns.join('\n')})`;
}

function timePerOp(ops: number, fn: () => void): number {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < ops; i++) fn();
  return Number(process.hrtime.bigint() - t0) / ops;
}

export async function benchWasmHost(): Promise<Record<string, number>> {
  setLogLevel('error');
  const dir = await mkdtemp(join(tmpdir(), 'weft-wasm-bench-'));
  const host = new PluginHost({ metrics: new MetricsRegistry(), foreignFunctions: new ForeignFunctionRegistry(), idleMs: 0 });
  try {
    const addPath = join(dir, 'add.wasm');
    await writeFile(addPath, await wat(ADD_HEADER));
    const loaded = await host.load([pluginConfig('add', pathToFileURL(addPath).href)]);
    if (!loaded.ok) throw new Error(JSON.stringify(loaded.problems));

    // Full stream: create, request headers (replace), response headers (add), done (on_done, on_log, on_delete).
    const request = (): void => {
      const chain = host.createStream(['add']);
      chain.onRequestHeaders([[':method', 'GET'], [':path', '/'], [':authority', 'svc'], ['user-agent', 'bench']], true);
      chain.onResponseHeaders([[':status', '200'], ['content-length', '2']], false);
      chain.done();
    };
    const noPlugin = (): void => {
      const chain = host.createStream([]);
      chain.onRequestHeaders([[':method', 'GET'], [':path', '/'], [':authority', 'svc'], ['user-agent', 'bench']], true);
      chain.onResponseHeaders([[':status', '200'], ['content-length', '2']], false);
      chain.done();
    };
    timePerOp(50_000, request);
    timePerOp(50_000, noPlugin);
    const withPluginNs = Math.min(timePerOp(200_000, request), timePerOp(200_000, request));
    const baselineNs = Math.min(timePerOp(200_000, noPlugin), timePerOp(200_000, noPlugin));

    // Instrumentation cost: the same compute-heavy module with and without the fuel counter.
    const computeBytes = await wat(COMPUTE);
    const run = async (meterFuel: boolean): Promise<number> => {
      const compiled = await compilePlugin(computeBytes, { memoryMb: 16, meterFuel });
      const instance = new WebAssembly.Instance(compiled.module, { __weft: { refill_fuel: () => 1_000_000, memory_grow: () => -1 } });
      const work = instance.exports.work as (n: number) => number;
      // Enough calls for V8 to tier the function up from Liftoff to TurboFan before sampling.
      for (let i = 0; i < 10; i++) work(8);
      const samples = Array.from({ length: 15 }, () => timePerOp(1, () => work(60)));
      return Math.min(...samples);
    };
    const plainNs = await run(false);
    const meteredNs = await run(true);

    // Cold start of a 2.5 MB plugin: read from the cache directory, compile, instantiate, start, configure.
    const bigPath = join(dir, 'big.wasm');
    const big = await wat(bigModule(2.5 * 1024 * 1024));
    await writeFile(bigPath, big);
    const coldHost = new PluginHost({ metrics: new MetricsRegistry(), foreignFunctions: new ForeignFunctionRegistry(), idleMs: 0 });
    const c0 = performance.now();
    const coldLoaded = await coldHost.load([pluginConfig('big', pathToFileURL(bigPath).href, { limits: { cpuMs: 1000, memoryMb: 16 } })]);
    const coldMs = performance.now() - c0;
    if (!coldLoaded.ok) throw new Error(JSON.stringify(coldLoaded.problems));
    // Warm instantiate: a new VM from the already-compiled module (what eviction and FAIL_RELOAD cost).
    const rt = coldHost.runtimeOf('big')!;
    const warm: number[] = [];
    for (let i = 0; i < 20; i++) {
      rt.evictIfIdle(performance.now() + 1e9, 0);
      const w0 = performance.now();
      rt.acquire();
      warm.push(performance.now() - w0);
    }
    coldHost.close();
    warm.sort((a, b) => a - b);
    return {
      wasm_request_with_filter_us: withPluginNs / 1000,
      wasm_request_no_plugin_us: baselineNs / 1000,
      wasm_host_overhead_per_request_us: (withPluginNs - baselineNs) / 1000,
      wasm_instrumentation_cost_ratio: meteredNs / plainNs,
      wasm_cold_start_ms: coldMs,
      wasm_cold_start_module_mb: big.length / (1024 * 1024),
      wasm_warm_instantiate_ms: warm[Math.floor(warm.length / 2)]!,
    };
  } finally {
    host.close();
    await rm(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  benchWasmHost().then(
    (r) => process.stdout.write(`${JSON.stringify(r, null, 2)}\n`),
    (err: unknown) => {
      process.stderr.write(`${String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
