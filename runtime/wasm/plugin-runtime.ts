/**
 * One configured plugin version: its compiled module, settings and failStrategy, and the VM that serves it — created
 * on first use, kept while used, evicted when idle, replaced after a failure so a failed VM never poisons later
 * requests, and retired (after its in-flight streams finish) when a new version takes over.
 */
import type { PluginConfig } from '../config/config-schema.js';
import type { HostServices } from './host-services.js';
import { PluginFailure } from './plugin-failure.js';
import type { HostMetrics } from './host-metrics.js';
import { type CompiledPlugin, PluginVm, type VmSettings } from './plugin-vm.js';

export type FailStrategy = PluginConfig['failStrategy'];

export const DEFAULT_CPU_MS = 50;
export const DEFAULT_MEMORY_MB = 64;
/** After a VM fails to start, requests fail fast (per failStrategy) for this long before another start is tried. */
const START_BACKOFF_MS = 1000;

const encoder = new TextEncoder();

/** What Istio delivers as PLUGIN_CONFIGURATION: pluginConfig serialized to JSON (a string is passed through). */
export function pluginConfigurationBytes(config: unknown): Uint8Array {
  if (config === undefined || config === null) return new Uint8Array(0);
  return encoder.encode(typeof config === 'string' ? config : JSON.stringify(config));
}

export function vmSettingsFor(config: PluginConfig): VmSettings {
  return {
    plugin: config.name,
    // Istio leaves root_id empty unless pluginName is set; C++ SDK filters register their root context for "".
    rootId: config.pluginName ?? '',
    vmId: config.name,
    cpuMs: config.limits?.cpuMs ?? DEFAULT_CPU_MS,
    vmConfiguration: new Uint8Array(0),
    pluginConfiguration: pluginConfigurationBytes(config.config),
    env: config.vmConfig?.env ?? {},
  };
}

export class PluginRuntime {
  readonly config: PluginConfig;
  readonly compiled: CompiledPlugin;
  readonly settings: VmSettings;
  readonly #services: HostServices;
  readonly #metrics: HostMetrics;
  #vm: PluginVm | undefined;
  /** VMs no longer current (failed or superseded) that still carry streams; closed when the last one finishes. */
  readonly #draining = new Set<PluginVm>();
  #startFailure: { at: number; failure: PluginFailure } | undefined;
  #retired = false;
  streams = 0;
  /** The compile-cache key of `compiled`, so the host can let go of modules no runtime uses. */
  readonly cacheKey: string;

  constructor(config: PluginConfig, compiled: CompiledPlugin, services: HostServices, metrics: HostMetrics, cacheKey = compiled.sha256) {
    this.config = config;
    this.cacheKey = cacheKey;
    this.compiled = compiled;
    this.settings = vmSettingsFor(config);
    this.#services = services;
    this.#metrics = metrics;
  }

  get name(): string {
    return this.config.name;
  }

  get failStrategy(): FailStrategy {
    return this.config.failStrategy;
  }

  get vm(): PluginVm | undefined {
    return this.#vm;
  }

  get vmCount(): number {
    return (this.#vm === undefined ? 0 : 1) + this.#draining.size;
  }

  /** The ready VM for a new stream, starting one if needed; a PluginFailure when none can be had right now. */
  acquire(): PluginVm | PluginFailure {
    this.streams++;
    const vm = this.#vm;
    if (vm !== undefined && vm.state === 'ready') return vm;
    // A retired version still serves chains created before the swap; its VM closes when their streams end.
    if (this.#startFailure !== undefined && performance.now() - this.#startFailure.at < START_BACKOFF_MS) return this.#startFailure.failure;
    return this.#start();
  }

  /** Starts the first VM at load time, so a plugin that cannot start rejects the configuration that named it. */
  warm(): PluginFailure | undefined {
    const r = this.#start();
    return r instanceof PluginFailure ? r : undefined;
  }

  #start(): PluginVm | PluginFailure {
    try {
      const vm = PluginVm.start(this.compiled, this.settings, this.#services, {
        onFailed: (v, failure) => this.#onFailed(v, failure),
        onStreamReleased: (v) => this.#onStreamReleased(v),
      });
      this.#vm = vm;
      this.#startFailure = undefined;
      this.#metrics.vmStarted(this.name);
      return vm;
    } catch (err) {
      const failure = err instanceof PluginFailure ? err : new PluginFailure(this.name, 'start_failed', (err as Error).message, err);
      this.#startFailure = { at: performance.now(), failure };
      return failure;
    }
  }

  #onFailed(vm: PluginVm, failure: PluginFailure): void {
    this.#metrics.vmFailed(this.name, failure.reason);
    if (vm !== this.#vm) {
      if (vm.activeStreams === 0) this.#draining.delete(vm);
      return;
    }
    this.#vm = undefined;
    if (vm.activeStreams > 0) this.#draining.add(vm);
    // FAIL_RELOAD: have a fresh VM ready before the next request instead of paying the cold start on it.
    if (this.failStrategy === 'FAIL_RELOAD' && !this.#retired && vm.state === 'failed') {
      setImmediate(() => {
        if (this.#vm === undefined && !this.#retired) this.#start();
      });
    }
  }

  #onStreamReleased(vm: PluginVm): void {
    if (vm.activeStreams > 0 || (vm === this.#vm && !this.#retired)) return;
    if (vm === this.#vm) this.#vm = undefined;
    this.#draining.delete(vm);
    vm.close();
  }

  noteStreamFailure(failure: PluginFailure): void {
    this.#metrics.streamFailed(this.name, failure.reason, this.failStrategy);
  }

  /** Closes the VM if nothing used it for `idleMs` (and it has no timers or callouts in flight). */
  evictIfIdle(now: number, idleMs: number): boolean {
    const vm = this.#vm;
    if (vm === undefined || vm.busy || now - vm.lastUsed < idleMs) return false;
    this.#vm = undefined;
    vm.close();
    this.#metrics.vmEvicted(this.name);
    return true;
  }

  /** Superseded or removed: no new streams; the current VM closes once its in-flight streams finish. */
  retire(): void {
    this.#retired = true;
    const vm = this.#vm;
    if (vm === undefined || vm.activeStreams > 0) return;
    this.#vm = undefined;
    vm.close();
  }

  close(): void {
    this.#retired = true;
    this.#vm?.close();
    this.#vm = undefined;
    for (const vm of this.#draining) vm.close();
    this.#draining.clear();
  }
}
