/**
 * The component filters of a weft instance (`plugins:` entries that are components): admission of a whole set (fetch,
 * sha256, world check, transpile cached by sha256, fuel-metered compile, a first instance configured), all or nothing,
 * then a swap; idle instances are dropped. Ordering, attachment and failStrategy are the L7 chain's (runtime/l7).
 */
import { isDeepStrictEqual } from 'node:util';
import type { PluginConfig } from '../config/config-schema.js';
import type { Logger } from '../log.js';
import type { MetricsRegistry } from '../telemetry/metrics-registry.js';
import { DEFAULT_MEMORY_MB } from '../wasm/plugin-runtime.js';
import { admitComponent, defaultFunctionCacheDir, fetchComponent, type CompiledFunction } from './component-admission.js';
import { ComponentFilter, type Instantiate } from './component-filter.js';

export interface ComponentFilterHostOptions {
  metrics: MetricsRegistry;
  logger: Logger;
  /** Transpiled components by sha256 (shared with functions); defaultFunctionCacheDir() when absent. */
  cacheDir?: string;
  /** Drop an instance unused this long; default 5 minutes (as proxy-wasm VMs), 0 disables. */
  idleMs?: number;
}

export type FilterProblem = { plugin: string; reason: string };

/** A prepared set: `commit` swaps it in, `discard` drops what was admitted for it. */
export type PreparedFilters = { ok: true; commit(): void; discard(): void } | { ok: false; problems: FilterProblem[] };

const DEFAULT_IDLE_MS = 5 * 60_000;

export class ComponentFilterHost {
  readonly #opts: ComponentFilterHostOptions;
  readonly #cacheDir: string;
  readonly #idleMs: number;
  #filters = new Map<string, ComponentFilter>();
  /** Compiled components by sha256 and memory cap: filters of one component share its modules (and their lazy compilation). */
  #compiled = new Map<string, Promise<CompiledFunction>>();
  #sweep: NodeJS.Timeout | undefined;
  readonly #failures;
  readonly #starts;

  constructor(opts: ComponentFilterHostOptions) {
    this.#opts = opts;
    this.#cacheDir = opts.cacheDir ?? defaultFunctionCacheDir();
    this.#idleMs = opts.idleMs ?? DEFAULT_IDLE_MS;
    this.#failures = opts.metrics.counter('weft_component_filter_failures_total', 'Component filter calls that failed (trap, CPU budget, memory limit, configure), by reason', ['plugin', 'reason']);
    this.#starts = opts.metrics.counter('weft_component_filter_instances_started_total', 'Component filter instances instantiated and configured', ['plugin']);
    const live = opts.metrics.gauge('weft_component_filter_instances', 'Component filter instances alive', ['plugin']);
    const filters = (): Map<string, ComponentFilter> => this.#filters;
    Object.assign(live, {
      collect(this: typeof live) {
        this.reset();
        for (const f of filters().values()) this.set({ plugin: f.name }, f.live ? 1 : 0);
      },
    });
    if (this.#idleMs > 0) {
      this.#sweep = setInterval(() => this.sweepIdle(), Math.max(1000, this.#idleMs / 2));
      this.#sweep.unref();
    }
  }

  /** Admits `configs` (every one a component filter) without touching the running set. */
  async prepare(configs: readonly PluginConfig[]): Promise<PreparedFilters> {
    const problems: FilterProblem[] = [];
    const next = new Map<string, ComponentFilter>();
    await Promise.all(
      configs.map(async (config) => {
        const current = this.#filters.get(config.name);
        if (current !== undefined && isDeepStrictEqual(current.config, config)) {
          next.set(config.name, current);
          return;
        }
        try {
          next.set(config.name, await this.#admit(config));
        } catch (err) {
          problems.push({ plugin: config.name, reason: err instanceof Error ? err.message : String(err) });
        }
      }),
    );
    const fresh = [...next.values()].filter((f) => this.#filters.get(f.name) !== f);
    if (problems.length > 0) {
      for (const f of fresh) f.close();
      for (const p of problems) this.#opts.logger.warn({ plugin: p.plugin, reason: p.reason }, 'component filter refused; keeping the running configuration');
      return { ok: false, problems };
    }
    return {
      ok: true,
      commit: () => {
        for (const [name, f] of this.#filters) if (next.get(name) !== f) f.close();
        this.#filters = next;
        const used = new Set([...next.values()].map((f) => `${f.compiled.sha256}:${f.config.limits?.memoryMb ?? DEFAULT_MEMORY_MB}`));
        for (const key of this.#compiled.keys()) if (!used.has(key)) this.#compiled.delete(key);
      },
      discard: () => {
        for (const f of fresh) f.close();
      },
    };
  }

  async #admit(config: PluginConfig): Promise<ComponentFilter> {
    const fetched = await fetchComponent(config.url, config.sha256);
    const memoryMb = config.limits?.memoryMb ?? DEFAULT_MEMORY_MB;
    const key = `${fetched.sha256}:${memoryMb}`;
    let pending = this.#compiled.get(key);
    if (pending === undefined) {
      pending = admitComponent(fetched.bytes, fetched.sha256, memoryMb, this.#cacheDir, 'filter');
      this.#compiled.set(key, pending);
      pending.catch(() => this.#compiled.delete(key));
    }
    const compiled = await pending;
    const glue = (await import(compiled.jsUrl)) as { instantiate: Instantiate };
    const filter = new ComponentFilter(config, compiled, glue.instantiate, this.#opts.logger, {
      started: () => this.#starts.inc({ plugin: config.name }),
      failed: (f) => this.#failures.inc({ plugin: config.name, reason: f.reason }),
    });
    const failure = filter.warm();
    if (failure !== undefined) throw failure;
    this.#opts.logger.info({ plugin: config.name, sha256: compiled.sha256, bytes: compiled.size, cached: compiled.cached, transpile_ms: Math.round(compiled.transpileMs), compile_ms: Math.round(compiled.compileMs), bodies: filter.seesBodies }, 'component filter admitted');
    return filter;
  }

  has(name: string): boolean {
    return this.#filters.has(name);
  }

  get(name: string): ComponentFilter | undefined {
    return this.#filters.get(name);
  }

  status(): { name: string; url: string; sha256: string; failStrategy: string; live: boolean; calls: number; bodies: boolean }[] {
    return [...this.#filters.values()].map((f) => ({ name: f.name, url: f.config.url, sha256: f.compiled.sha256, failStrategy: f.failStrategy, live: f.live, calls: f.calls, bodies: f.seesBodies }));
  }

  /** Drops instances idle for idleMs; runs on a timer, callable directly (tests pass `now`). */
  sweepIdle(now = performance.now(), idleMs = this.#idleMs): number {
    let n = 0;
    for (const f of this.#filters.values()) if (f.evictIfIdle(now, idleMs)) n++;
    return n;
  }

  close(): void {
    if (this.#sweep !== undefined) clearInterval(this.#sweep);
    this.#sweep = undefined;
    for (const f of this.#filters.values()) f.close();
    this.#filters.clear();
  }
}
