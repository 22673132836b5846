/**
 * One admitted component filter (world weft:filter/http-filter) and its instance on the event loop: instantiated
 * synchronously from the compiled cores with weft's `host` imports, configured once, then called per phase under the
 * plugin's CPU budget (fuel, as proxy-wasm VMs) and memory cap. The L7 adapter (runtime/l7/component-filter-stream.ts)
 * supplies the phase's view of the request; a failure discards the instance and the next call gets a fresh one.
 */
import { existsSync, readFileSync } from 'node:fs';
import type { PluginConfig } from '../config/config-schema.js';
import type { Logger } from '../log.js';
import { FUEL_IMPORT_MODULE, FUEL_IMPORT_NAME, GROW_IMPORT_NAME, START_EXPORT_NAME } from '../wasm/fuel-instrumenter.js';
import { GuestAbort, PluginFailure, classifyFailure } from '../wasm/plugin-failure.js';
import { pluginConfigurationBytes } from '../wasm/plugin-runtime.js';
import { BODY_FILTER_EXPORT, type CompiledFunction } from './component-admission.js';

/** What the guest's `host` imports read and edit during one phase call. */
export interface FilterPhaseView {
  getHeader(name: string): string | undefined;
  setHeader(name: string, value: string): void;
  removeHeader(name: string): void;
  property(path: string): string | undefined;
  readonly requestId: string;
}

/** The WIT `action` as jco lifts it. */
export type ComponentAction = { tag: 'continue' } | { tag: 'respond'; val: { status: number; headers: [string, Uint8Array][]; body: Uint8Array } };

interface FilterExports {
  configure(config: Uint8Array): void;
  onRequestHeaders(endOfStream: boolean): ComponentAction;
  onResponseHeaders(endOfStream: boolean): ComponentAction;
}

interface BodyFilterExports {
  onRequestBody(body: Uint8Array, endOfStream: boolean): ComponentAction;
  onRequestTrailers(): ComponentAction;
  onResponseBody(body: Uint8Array, endOfStream: boolean): ComponentAction;
  onResponseTrailers(): ComponentAction;
}

/** Metrics hooks: an instance started (admission, after a failure or an idle drop), a call or a start failed. */
export interface FilterHooks {
  started(): void;
  failed(failure: PluginFailure): void;
}

export type Instantiate = (getCoreModule: (name: string) => WebAssembly.Module, imports: Record<string, unknown>, instantiateCore: (m: WebAssembly.Module, i?: WebAssembly.Imports) => WebAssembly.Instance) => Record<string, unknown>;

/** Fuel per refill: ten times plugin-vm.ts's, since an interpreter-sized guest burns it fast (a check every ~0.1 ms). */
const FUEL_CHUNK = 3_000_000;
/** After a fresh instance failed to start, calls fail fast this long before the next attempt (as proxy-wasm VMs). */
const RESTART_BACKOFF_MS = 1000;
const DEFAULT_CPU_MS = 50;
/**
 * Budget of instantiation, configure and the first call of each phase: V8 compiles Wasm functions lazily on their first
 * call, and a SpiderMonkey-sized guest spends hundreds of ms there on a loaded machine. Workers allow 1 s of startup;
 * this is wall time on a shared event loop, so it is larger.
 */
const STARTUP_MS = 5000;
/**
 * The budget is CPU time of this thread (Linux schedstat, ns on CPU) so a busy machine that deschedules the event loop
 * does not fail a filter. Reading /proc costs some µs and a SpiderMonkey guest refills fuel every few µs, so refills
 * check the wall clock, and schedstat is read only once a call has run CPU_PROBE_MS of wall time (thread CPU never
 * exceeds wall time, so the wall clock alone can say "still within budget").
 */
const SCHEDSTAT = '/proc/thread-self/schedstat';
const threadCpuMs: (() => number) | undefined = existsSync(SCHEDSTAT) ? () => Number(readFileSync(SCHEDSTAT, 'latin1').split(' ', 1)[0]) / 1e6 : undefined;
const CPU_PROBE_MS = 5;

/** Lazy compilation is per compiled module, which filters of the same component and memory cap share. */
const warmedPhases = new WeakMap<CompiledFunction, Set<string>>();
const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error'] as const;

const latin1 = (bytes: Uint8Array): string => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');

interface Instance {
  filter: FilterExports;
  body: BodyFilterExports | undefined;
  memories: WebAssembly.Memory[];
}

export class ComponentFilter {
  readonly name: string;
  readonly config: PluginConfig;
  readonly compiled: CompiledFunction;
  /** The component exports weft:filter/body-filter: bodies reach it whole, trailers too. */
  readonly seesBodies: boolean;
  readonly #instantiate: Instantiate;
  readonly #log: Logger;
  readonly #cpuMs: number;
  readonly #configBytes: Uint8Array;
  readonly #hooks: FilterHooks;
  #instance: Instance | undefined;
  #view: FilterPhaseView | undefined;
  #epoch = 0;
  #fuelEpoch = -1;
  #budgetStart = 0;
  /** This thread's CPU time at the budget's start, estimated once the call ran CPU_PROBE_MS (undefined before). */
  #cpuStart: number | undefined;
  #budgetMs = STARTUP_MS;
  /** Phases that completed once on this filter's compiled module (past their lazy compilation). */
  readonly #warmed: Set<string>;
  #doomed: GuestAbort | undefined;
  #growRefused = false;
  #startFailedAt = -Infinity;
  #startFailure: PluginFailure | undefined;
  #lastUsed = performance.now();
  instancesStarted = 0;
  calls = 0;

  constructor(config: PluginConfig, compiled: CompiledFunction, instantiate: Instantiate, log: Logger, hooks: FilterHooks) {
    this.name = config.name;
    this.config = config;
    this.compiled = compiled;
    this.seesBodies = compiled.exports.some((e) => BODY_FILTER_EXPORT.test(e));
    this.#instantiate = instantiate;
    this.#log = log;
    this.#cpuMs = config.limits?.cpuMs ?? DEFAULT_CPU_MS;
    this.#configBytes = pluginConfigurationBytes(config.config);
    this.#hooks = hooks;
    this.#warmed = warmedPhases.get(compiled) ?? new Set();
    warmedPhases.set(compiled, this.#warmed);
  }

  get failStrategy(): PluginConfig['failStrategy'] {
    return this.config.failStrategy;
  }

  get live(): boolean {
    return this.#instance !== undefined;
  }

  /** Instantiates and configures now (admission: a filter that cannot start refuses the configuration). */
  warm(): PluginFailure | undefined {
    try {
      this.#ensure();
      return undefined;
    } catch (err) {
      return err instanceof PluginFailure ? err : classifyFailure(this.name, err, false);
    }
  }

  onRequestHeaders(view: FilterPhaseView, endOfStream: boolean): ComponentAction {
    return this.#call('onRequestHeaders', view, (i) => i.filter.onRequestHeaders(endOfStream));
  }

  onResponseHeaders(view: FilterPhaseView, endOfStream: boolean): ComponentAction {
    return this.#call('onResponseHeaders', view, (i) => i.filter.onResponseHeaders(endOfStream));
  }

  onRequestBody(view: FilterPhaseView, body: Uint8Array, endOfStream: boolean): ComponentAction {
    return this.#call('onRequestBody', view, (i) => i.body?.onRequestBody(body, endOfStream) ?? { tag: 'continue' });
  }

  onResponseBody(view: FilterPhaseView, body: Uint8Array, endOfStream: boolean): ComponentAction {
    return this.#call('onResponseBody', view, (i) => i.body?.onResponseBody(body, endOfStream) ?? { tag: 'continue' });
  }

  onRequestTrailers(view: FilterPhaseView): ComponentAction {
    return this.#call('onRequestTrailers', view, (i) => i.body?.onRequestTrailers() ?? { tag: 'continue' });
  }

  onResponseTrailers(view: FilterPhaseView): ComponentAction {
    return this.#call('onResponseTrailers', view, (i) => i.body?.onResponseTrailers() ?? { tag: 'continue' });
  }

  /** Drops the instance when unused for `idleMs` (its memory goes back; the next call instantiates again). */
  evictIfIdle(now: number, idleMs: number): boolean {
    if (this.#instance === undefined || now - this.#lastUsed < idleMs) return false;
    this.#instance = undefined;
    return true;
  }

  close(): void {
    this.#instance = undefined;
  }

  /** Runs one guest call under the CPU budget; any throw fails the instance and surfaces as a PluginFailure. */
  #call<T>(phase: string, view: FilterPhaseView, fn: (i: Instance) => T): T {
    const instance = this.#ensure();
    this.calls++;
    this.#lastUsed = performance.now();
    this.#view = view;
    this.#epoch++;
    this.#doomed = undefined;
    this.#budgetMs = this.#warmed.has(phase) ? this.#cpuMs : Math.max(this.#cpuMs, STARTUP_MS);
    try {
      const r = fn(instance);
      const doomed = this.#doomedBy();
      if (doomed !== undefined) throw doomed;
      this.#warmed.add(phase);
      return r;
    } catch (err) {
      throw this.#fail(err, instance);
    } finally {
      this.#view = undefined;
    }
  }

  #ensure(): Instance {
    if (this.#instance !== undefined) return this.#instance;
    if (this.#startFailure !== undefined && performance.now() - this.#startFailedAt < RESTART_BACKOFF_MS) throw this.#startFailure;
    const memories: WebAssembly.Memory[] = [];
    let exports: Record<string, unknown>;
    this.#epoch++;
    this.#doomed = undefined;
    this.#growRefused = false;
    this.#budgetMs = Math.max(this.#cpuMs, STARTUP_MS);
    try {
      exports = this.#instantiate(
        (name) => {
          const m = this.compiled.modules[name];
          if (m === undefined) throw new Error(`the component asks for core module ${name}, which admission did not produce`);
          return m;
        },
        { 'weft:filter/host': this.#hostImports() },
        (module, importObject = {}) => this.#instantiateCore(module, importObject, memories),
      );
    } catch (err) {
      throw this.#startFailed(classifyFailure(this.name, this.#doomed ?? err, false), 'instantiation failed');
    }
    const filter = (exports.filter ?? exports['weft:filter/filter@0.1.0']) as FilterExports | undefined;
    const body = (exports.bodyFilter ?? exports['weft:filter/body-filter@0.1.0']) as BodyFilterExports | undefined;
    if (filter === undefined) throw this.#startFailed(new PluginFailure(this.name, 'start_failed', 'the component does not export weft:filter/filter'), 'no filter export');
    const instance: Instance = { filter, body, memories };
    this.#epoch++;
    try {
      filter.configure(this.#configBytes);
      const doomed = this.#doomedBy();
      if (doomed !== undefined) throw doomed;
    } catch (err) {
      // jco lifts `result<_, string>`'s error into a throw: jco 1.35's glue throws a ComponentError whose payload is the
      // guest's message, jco-transpile 0.15's throws the string itself.
      const payload = typeof err === 'string' ? err : (err as { payload?: unknown } | null)?.payload;
      const failure = typeof payload === 'string' ? new PluginFailure(this.name, 'configure_failed', `configure rejected its configuration: ${payload}`, err) : classifyFailure(this.name, this.#doomed ?? err, this.#atCap(memories));
      throw this.#startFailed(failure, 'configure failed');
    }
    this.#instance = instance;
    this.#startFailure = undefined;
    this.instancesStarted++;
    this.#hooks.started();
    return instance;
  }

  /** Core instantiation with weft's fuel and memory-growth imports for the metered cores; runs their deferred start. */
  #instantiateCore(module: WebAssembly.Module, importObject: WebAssembly.Imports, memories: WebAssembly.Memory[]): WebAssembly.Instance {
    const slot: { memory?: WebAssembly.Memory } = {};
    const imports = {
      ...importObject,
      [FUEL_IMPORT_MODULE]: { [FUEL_IMPORT_NAME]: () => this.#refillFuel(), [GROW_IMPORT_NAME]: (pages: number) => this.#grow(slot.memory, pages) },
    };
    const instance = new WebAssembly.Instance(module, imports);
    for (const e of Object.values(instance.exports)) {
      if (e instanceof WebAssembly.Memory) {
        slot.memory ??= e;
        memories.push(e);
      }
    }
    const start = instance.exports[START_EXPORT_NAME];
    if (typeof start === 'function') (start as () => void)();
    return instance;
  }

  #hostImports(): Record<string, unknown> {
    const view = (): FilterPhaseView => {
      if (this.#view === undefined) throw new GuestAbort('host_error', 'a host function was called outside a filter phase');
      return this.#view;
    };
    return {
      getHeader: (name: string): Uint8Array | undefined => {
        const v = view().getHeader(name.toLowerCase());
        return v === undefined ? undefined : Buffer.from(v, 'latin1');
      },
      setHeader: (name: string, value: Uint8Array): void => view().setHeader(name.toLowerCase(), latin1(value)),
      removeHeader: (name: string): void => view().removeHeader(name.toLowerCase()),
      property: (path: string): Uint8Array | undefined => {
        const v = view().property(path);
        return v === undefined ? undefined : Buffer.from(v, 'utf8');
      },
      log: (level: number, msg: string): void => {
        const at = LOG_LEVELS[Math.min(level, 4)] ?? 'info';
        this.#log[at]({ plugin: this.name, request_id: this.#view?.requestId }, msg);
      },
    };
  }

  /** Set by the fuel callback during a guest call (a method, so no narrowing from before the call survives it). */
  #doomedBy(): GuestAbort | undefined {
    return this.#doomed;
  }

  /** Called by the metered guest when its fuel runs out: a new chunk, or -1 (the guest traps) once the budget is spent. */
  #refillFuel(): number {
    if (this.#doomed !== undefined) return -1;
    const now = performance.now();
    if (this.#fuelEpoch !== this.#epoch) {
      this.#fuelEpoch = this.#epoch;
      this.#budgetStart = now;
      this.#cpuStart = undefined;
      return FUEL_CHUNK;
    }
    const wall = now - this.#budgetStart;
    if (threadCpuMs !== undefined && wall >= CPU_PROBE_MS) {
      // Counting the first CPU_PROBE_MS of wall time as CPU errs towards stopping, never towards running on.
      this.#cpuStart ??= threadCpuMs() - wall;
      if (wall <= this.#budgetMs) return FUEL_CHUNK;
      const spent = threadCpuMs() - this.#cpuStart;
      if (spent <= this.#budgetMs) return FUEL_CHUNK;
      this.#doomed = new GuestAbort('cpu_budget', `call used ${spent.toFixed(1)} ms of CPU, over its budget of ${this.#budgetMs} ms`);
      return -1;
    }
    if (wall <= this.#budgetMs) return FUEL_CHUNK;
    this.#doomed = new GuestAbort('cpu_budget', `call ran ${wall.toFixed(1)} ms, over its budget of ${this.#budgetMs} ms`);
    return -1;
  }

  /** memory.grow routed through the host: -1 past the cap (the maximum set at admission), remembered to classify the trap. */
  #grow(memory: WebAssembly.Memory | undefined, pages: number): number {
    if (memory === undefined) return -1;
    try {
      return memory.grow(pages);
    } catch {
      this.#growRefused = true;
      return -1;
    }
  }

  #atCap(memories: readonly WebAssembly.Memory[]): boolean {
    if (this.#growRefused) return true;
    const used = memories.reduce((n, m) => n + m.buffer.byteLength, 0);
    return used >= this.compiled.memoryCapBytes * 0.95;
  }

  #fail(err: unknown, instance: Instance): PluginFailure {
    const failure = classifyFailure(this.name, this.#doomed ?? err, this.#atCap(instance.memories));
    if (this.#instance === instance) this.#instance = undefined;
    this.#log.warn({ plugin: this.name, reason: failure.reason, err: failure.message }, 'component filter instance discarded');
    this.#hooks.failed(failure);
    return failure;
  }

  #startFailed(failure: PluginFailure, what: string): PluginFailure {
    this.#startFailure = failure;
    this.#startFailedAt = performance.now();
    this.#log.warn({ plugin: this.name, reason: failure.reason, err: failure.message }, `component filter ${what}`);
    this.#hooks.failed(failure);
    return failure;
  }
}
