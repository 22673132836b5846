/**
 * The proxy-wasm host as the rest of weft sees it: `load`/`replace` a whole plugin configuration (fetch, verify,
 * compile, start; all or nothing), `createStream` for each request, and idle eviction. See README.md for the contract.
 */
import { isDeepStrictEqual } from 'node:util';
import type { PluginConfig } from '../config/config-schema.js';
import { WeftError } from '../errors.js';
import { type Logger, createLogger } from '../log.js';
import type { MetricsRegistry } from '../telemetry/metrics-registry.js';
import type { ForeignFunctionRegistry } from './foreign-function.js';
import { FilterChain, unknownPluginError } from './filter-chain.js';
import { GrpcClients } from './grpc-clients.js';
import { HostMetrics } from './host-metrics.js';
import type { GrpcResolver, HostServices, HttpCallFn, PluginLogHook } from './host-services.js';
import { PluginCache } from './plugin-cache.js';
import { type FetchOptions, createDispatcher, fetchModule } from './plugin-fetcher.js';
import { compilePlugin, sha256Hex } from './plugin-loader.js';
import { DEFAULT_MEMORY_MB, PluginRuntime } from './plugin-runtime.js';
import { PluginMetrics } from './plugin-metrics.js';
import type { PropertyValue } from './properties.js';
import type { CompiledPlugin } from './plugin-vm.js';
import { SharedData } from './shared-data.js';
import { SharedQueues } from './shared-queues.js';
import { EMPTY_STREAM_INFO, type StreamInfo } from './stream-info.js';

export interface PluginHostOptions {
  metrics: MetricsRegistry;
  foreignFunctions: ForeignFunctionRegistry;
  httpCall?: HttpCallFn;
  grpc?: GrpcResolver;
  logger?: Logger;
  pluginLog?: PluginLogHook;
  nodeProperties?: Record<string, PropertyValue>;
  /** Where fetched modules are kept across restarts; in memory only when omitted. */
  cacheDir?: string;
  fetch?: FetchOptions;
  /** Close a plugin's VM after this long without streams, timers or callouts; default 5 minutes, 0 disables. */
  idleMs?: number;
  /**
   * Modules another thread already fetched, verified and compiled for this plugin configuration (runtime/workers: the
   * primary compiles once and shares the WebAssembly.Module); undefined for a plugin this host must load itself.
   */
  compiledPlugins?: (config: PluginConfig) => CompiledPlugin | undefined;
}

export interface PluginProblem {
  plugin: string;
  reason: string;
}

export type LoadResult = { ok: true; plugins: string[] } | { ok: false; problems: PluginProblem[] };

export interface PluginStatus {
  name: string;
  url: string;
  sha256: string;
  abi: string;
  failStrategy: string;
  vms: number;
  streams: number;
}

const DEFAULT_IDLE_MS = 5 * 60_000;

export class PluginHost {
  readonly #services: HostServices;
  readonly #metrics: HostMetrics;
  readonly #cache: PluginCache;
  readonly #fetchOptions: FetchOptions;
  readonly #idleMs: number;
  readonly #compiledPlugins: PluginHostOptions['compiledPlugins'];
  readonly #log: Logger;
  #runtimes = new Map<string, PluginRuntime>();
  /** createStream's last runtimes, the map they were read from and its size then (close() clears that map). */
  #lastRuntimes: readonly PluginRuntime[] | undefined;
  #lastFrom: Map<string, PluginRuntime> | undefined;
  #lastFromSize = 0;
  /** Streams counted by versions that were replaced, so weft_plugin_streams_total never goes backwards. */
  readonly #pastStreams = new Map<string, number>();
  #sweep: NodeJS.Timeout | undefined;
  #applying: Promise<unknown> = Promise.resolve();

  constructor(options: PluginHostOptions) {
    this.#log = options.logger ?? createLogger('wasm');
    this.#services = {
      logger: this.#log,
      pluginLog: options.pluginLog,
      metrics: new PluginMetrics(options.metrics),
      shared: new SharedData(),
      queues: new SharedQueues(),
      foreignFunctions: options.foreignFunctions,
      httpCall: options.httpCall,
      grpc: options.grpc,
      grpcClients: new GrpcClients(),
      nodeProperties: options.nodeProperties ?? {},
    };
    this.#metrics = new HostMetrics(options.metrics, () => this.#live());
    this.#cache = new PluginCache(options.cacheDir);
    this.#fetchOptions = options.fetch ?? {};
    this.#idleMs = options.idleMs ?? DEFAULT_IDLE_MS;
    this.#compiledPlugins = options.compiledPlugins;
    if (this.#idleMs > 0) {
      this.#sweep = setInterval(() => this.sweepIdle(), Math.max(1000, this.#idleMs / 2));
      this.#sweep.unref();
    }
  }

  #live(): { plugin: string; vms: number; streams: number }[] {
    const names = new Set([...this.#runtimes.keys(), ...this.#pastStreams.keys()]);
    return [...names].map((plugin) => {
      const rt = this.#runtimes.get(plugin);
      return { plugin, vms: rt?.vmCount ?? 0, streams: (this.#pastStreams.get(plugin) ?? 0) + (rt?.streams ?? 0) };
    });
  }

  /** Applies a whole plugin configuration. On any problem nothing changes and every problem is listed. */
  load(configs: PluginConfig[]): Promise<LoadResult> {
    // Loads are serialized so two reloads cannot interleave their swaps.
    const run = this.#applying.then(() => this.#apply(configs));
    this.#applying = run.catch(() => undefined);
    return run;
  }

  /** The same as load: a new configuration replaces the running one without failing in-flight requests. */
  replace(configs: PluginConfig[]): Promise<LoadResult> {
    return this.load(configs);
  }

  async #apply(configs: PluginConfig[]): Promise<LoadResult> {
    const problems: PluginProblem[] = [];
    const seen = new Set<string>();
    for (const c of configs) {
      if (seen.has(c.name)) problems.push({ plugin: c.name, reason: 'defined twice' });
      seen.add(c.name);
    }
    if (problems.length > 0) return { ok: false, problems };
    const dispatcher = createDispatcher(this.#fetchOptions);
    const next = new Map<string, PluginRuntime>();
    const fresh: PluginRuntime[] = [];
    try {
      const results = await Promise.allSettled(
        configs.map(async (config) => {
          const current = this.#runtimes.get(config.name);
          if (current !== undefined && isDeepStrictEqual(current.config, config)) return current;
          const memoryMb = config.limits?.memoryMb ?? DEFAULT_MEMORY_MB;
          const shared = this.#compiledPlugins?.(config);
          const bytes = shared === undefined ? await this.#fetch(config, dispatcher) : undefined;
          const cacheKey = `${shared?.sha256 ?? sha256Hex(bytes!)}:${memoryMb}`;
          const compiled = shared ?? (await this.#cache.compiled(cacheKey, () => compilePlugin(bytes!, { memoryMb })));
          const runtime = new PluginRuntime(config, compiled, this.#services, this.#metrics, cacheKey);
          fresh.push(runtime);
          const failure = runtime.warm();
          if (failure !== undefined) throw failure;
          return runtime;
        }),
      );
      results.forEach((r, i) => {
        const name = configs[i]!.name;
        if (r.status === 'fulfilled') next.set(name, r.value);
        else {
          this.#metrics.loadFailed(name);
          problems.push({ plugin: name, reason: (r.reason as Error).message });
        }
      });
    } finally {
      await dispatcher.close();
    }
    if (problems.length > 0) {
      for (const rt of fresh) rt.close();
      this.#cache.prune(new Set([...this.#runtimes.values()].map((rt) => rt.cacheKey)));
      for (const p of problems) this.#log.warn({ plugin: p.plugin, reason: p.reason }, 'plugin refused; keeping the running configuration');
      return { ok: false, problems };
    }
    const previous = this.#runtimes;
    this.#runtimes = next;
    for (const [name, rt] of previous) {
      if (next.get(name) === rt) continue;
      this.#pastStreams.set(name, (this.#pastStreams.get(name) ?? 0) + rt.streams);
      rt.retire();
    }
    this.#cache.prune(new Set([...next.values()].map((rt) => rt.cacheKey)));
    return { ok: true, plugins: [...next.keys()] };
  }

  async #fetch(config: PluginConfig, dispatcher: ReturnType<typeof createDispatcher>): Promise<Uint8Array> {
    const want = config.sha256;
    if (want !== undefined) {
      const cached = await this.#cache.find(config.url, want);
      if (cached !== undefined) {
        this.#metrics.fetched(config.name, 'cache');
        return cached;
      }
    }
    let fetched;
    try {
      fetched = await fetchModule(config.url, this.#fetchOptions, dispatcher);
    } catch (err) {
      const last = config.url.startsWith('file://') ? undefined : await this.#cache.lastGood(config.url);
      if (last !== undefined && (want === undefined || want === last.entry.sha256 || want === last.entry.digest)) {
        this.#log.warn({ plugin: config.name, url: config.url, err }, 'plugin fetch failed; serving the cached version');
        this.#metrics.fetched(config.name, 'cache');
        return last.bytes;
      }
      throw err;
    }
    const sha = sha256Hex(fetched.bytes);
    if (want !== undefined && want !== sha && want !== fetched.digest) {
      throw new WeftError('WEFT_ERR_PLUGIN_LOAD', `sha256 mismatch for ${config.url}: configured ${want}, fetched module is ${sha}${fetched.digest === undefined ? '' : ` (manifest ${fetched.digest})`}`);
    }
    this.#metrics.fetched(config.name, config.url.startsWith('file://') ? 'file' : 'network');
    await this.#cache.put(config.url, { sha256: sha, ...(fetched.digest === undefined ? {} : { digest: fetched.digest }) }, fetched.bytes);
    return fetched.bytes;
  }

  /**
   * Fetches, verifies and compiles `configs` without starting them: the primary thread of several workers does this
   * once and hands the modules to the workers (`compiledPlugins`), which start their own VMs.
   */
  async compileOnly(configs: PluginConfig[]): Promise<{ ok: true; compiled: Map<string, CompiledPlugin> } | { ok: false; problems: PluginProblem[] }> {
    const dispatcher = createDispatcher(this.#fetchOptions);
    const compiled = new Map<string, CompiledPlugin>();
    const problems: PluginProblem[] = [];
    const keys = new Set<string>();
    try {
      await Promise.all(
        configs.map(async (config) => {
          try {
            const bytes = await this.#fetch(config, dispatcher);
            const memoryMb = config.limits?.memoryMb ?? DEFAULT_MEMORY_MB;
            const key = `${sha256Hex(bytes)}:${memoryMb}`;
            keys.add(key);
            compiled.set(config.name, await this.#cache.compiled(key, () => compilePlugin(bytes, { memoryMb })));
          } catch (err) {
            problems.push({ plugin: config.name, reason: (err as Error).message });
          }
        }),
      );
    } finally {
      await dispatcher.close();
    }
    this.#cache.prune(keys);
    return problems.length === 0 ? { ok: true, compiled } : { ok: false, problems };
  }

  /** Compiled modules held for reuse (one per distinct module and memory limit in the running configuration). */
  get compiledModules(): number {
    return this.#cache.compiledCount;
  }

  /** The live runtime of `name` (admin views and tests); undefined when not loaded. */
  runtimeOf(name: string): PluginRuntime | undefined {
    return this.#runtimes.get(name);
  }

  has(name: string): boolean {
    return this.#runtimes.has(name);
  }

  /**
   * A filter chain for one request through `pluginNames` (in the order given; the caller sorts by phase and priority).
   * Throws for a name that is not loaded.
   */
  createStream(pluginNames: readonly string[], streamInfo: StreamInfo = EMPTY_STREAM_INFO): FilterChain {
    return new FilterChain(this.#runtimesOf(pluginNames), streamInfo);
  }

  /**
   * The runtimes for `pluginNames`. The L7 path asks for the same names on every request, so the last answer is kept
   * while the loaded set is the same (a load or close replaces or clears the map it came from); chains only read it.
   */
  #runtimesOf(pluginNames: readonly string[]): readonly PluginRuntime[] {
    const last = this.#lastRuntimes;
    if (last !== undefined && this.#lastFrom === this.#runtimes && this.#lastFromSize === this.#runtimes.size && sameNames(last, pluginNames)) return last;
    const runtimes: PluginRuntime[] = new Array<PluginRuntime>(pluginNames.length);
    for (let i = 0; i < pluginNames.length; i++) {
      const rt = this.#runtimes.get(pluginNames[i]!);
      if (rt === undefined) throw unknownPluginError(pluginNames[i]!, [...this.#runtimes.keys()]);
      runtimes[i] = rt;
    }
    this.#lastRuntimes = runtimes;
    this.#lastFrom = this.#runtimes;
    this.#lastFromSize = this.#runtimes.size;
    return runtimes;
  }

  status(): PluginStatus[] {
    return [...this.#runtimes.values()].map((rt) => ({
      name: rt.name,
      url: rt.config.url,
      sha256: rt.compiled.sha256,
      abi: rt.compiled.abi,
      failStrategy: rt.failStrategy,
      vms: rt.vmCount,
      streams: rt.streams,
    }));
  }

  /** Closes VMs idle for idleMs; runs on a timer, callable directly (tests pass `now`). */
  sweepIdle(now = performance.now(), idleMs = this.#idleMs): number {
    let n = 0;
    for (const rt of this.#runtimes.values()) if (rt.evictIfIdle(now, idleMs)) n++;
    return n;
  }

  close(): void {
    if (this.#sweep !== undefined) clearInterval(this.#sweep);
    this.#sweep = undefined;
    for (const rt of this.#runtimes.values()) rt.close();
    this.#runtimes.clear();
    this.#services.grpcClients.close();
  }
}

function sameNames(runtimes: readonly PluginRuntime[], names: readonly string[]): boolean {
  if (runtimes.length !== names.length) return false;
  for (let i = 0; i < names.length; i++) if (runtimes[i]!.name !== names[i]) return false;
  return true;
}
