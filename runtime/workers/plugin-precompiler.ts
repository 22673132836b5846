/** Fetches, verifies (sha256) and compiles a config's plugins once in the primary thread; the workers receive the compiled WebAssembly.Modules and only start VMs. */
import type { WeftConfig } from '../config/config-schema.js';
import { createLogger } from '../log.js';
import { expandPluginInstances } from '../state/plugin-instances.js';
import { MetricsRegistry } from '../telemetry/metrics-registry.js';
import type { PluginHost } from '../wasm/plugin-host.js';
import type { CompiledPlugin } from '../wasm/plugin-vm.js';

export class PluginPrecompiler {
  #host: PluginHost | undefined;

  /** Compiled modules by plugin instance name, or every problem (the config is then refused, as a single node refuses it). */
  async compile(config: WeftConfig): Promise<{ ok: true; compiled: Record<string, CompiledPlugin> } | { ok: false; problems: string[] }> {
    // Component filters are admitted by each worker itself (their transpile is cached on disk by sha256).
    const { splitPluginKinds } = await import('../functions/plugin-kind.js');
    const instances = (await splitPluginKinds(expandPluginInstances(config))).wasm;
    if (instances.length === 0) return { ok: true, compiled: {} };
    if (this.#host === undefined) {
      // Loaded only for configs with plugins: an L4-only node never pays for the Wasm host here.
      const [{ PluginHost }, { ForeignFunctionRegistry }] = await Promise.all([import('../wasm/plugin-host.js'), import('../wasm/foreign-function.js')]);
      this.#host = new PluginHost({ metrics: new MetricsRegistry(), foreignFunctions: new ForeignFunctionRegistry(), logger: createLogger('wasm'), idleMs: 0 });
    }
    const result = await this.#host.compileOnly(instances);
    if (!result.ok) return { ok: false, problems: result.problems.map((p) => `plugin ${p.plugin}: ${p.reason}`) };
    return { ok: true, compiled: Object.fromEntries(result.compiled) };
  }

  close(): void {
    this.#host?.close();
  }
}
