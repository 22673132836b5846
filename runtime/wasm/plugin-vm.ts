/**
 * One instance of a plugin: its memory, its root context and live stream contexts, and the only place that calls into
 * the guest. Every call runs under the plugin's CPU budget (see fuel-instrumenter.ts); anything it throws marks this VM
 * failed for good, and the owner (plugin-runtime.ts) decides what happens next.
 */
import type { AbiVersion } from './abi-constants.js';
import { FUEL_IMPORT_MODULE, FUEL_IMPORT_NAME, GROW_IMPORT_NAME, START_EXPORT_NAME } from './fuel-instrumenter.js';
import { bindCallbacks, type Callbacks, type Guest0, type Guest1, type Guest2, type Guest3, type Guest5 } from './guest-callbacks.js';
import { GuestMemory } from './guest-memory.js';
import type { HeaderPairs } from './header-map-codec.js';
import { createHostImports } from './host-functions/host-imports.js';
import type { GrpcClients } from './grpc-clients.js';
import type { HostServices, HttpCallResponse } from './host-services.js';
import { GuestAbort, PluginFailure, classifyFailure } from './plugin-failure.js';
import { ContextTable } from './context-table.js';
import type { StreamContext } from './stream-context.js';
import { createWasi, ProcExit } from './wasi.js';

export interface CompiledPlugin {
  module: WebAssembly.Module;
  abi: AbiVersion;
  /** sha256 of the module bytes as fetched (before instrumentation). */
  sha256: string;
  size: number;
  exportNames: ReadonlySet<string>;
  /** The memory maximum after capping, in bytes. */
  maxMemoryBytes: number;
  /**
   * The module imports proxy_increment_metric and proxy_record_metric (those it imports) as (i32, i64) -> i32, the
   * ABI's signature, so a Wasm shim can take them (i64-split-shim.ts). Absent: served from JavaScript as BigInt.
   */
  splitI64Metrics?: boolean;
}

export interface VmSettings {
  plugin: string;
  rootId: string;
  vmId: string;
  cpuMs: number;
  vmConfiguration: Uint8Array;
  pluginConfiguration: Uint8Array;
  env: Record<string, string>;
}

export interface RootContext {
  readonly kind: 'root';
  readonly id: number;
}
export type ContextRecord = RootContext | StreamContext;

/** Fuel granted per refill: small enough that the wall clock is checked every fraction of a millisecond of guest work. */
const FUEL_CHUNK = 300_000;
const ROOT_CONTEXT_ID = 1;

export interface VmHooks {
  onFailed(vm: PluginVm, failure: PluginFailure): void;
  /** A stream context let go of this VM (the owner may now close a retired VM). */
  onStreamReleased(vm: PluginVm): void;
}

export class PluginVm {
  readonly compiled: CompiledPlugin;
  readonly settings: VmSettings;
  readonly services: HostServices;
  readonly root: RootContext = { kind: 'root', id: ROOT_CONTEXT_ID };
  readonly contexts = new ContextTable<ContextRecord>();
  /** The module's callbacks, each called with exactly its arity (guest-callbacks.ts). */
  cb: Callbacks = {};
  readonly #hooks: VmHooks;
  state: 'starting' | 'ready' | 'failed' | 'closed' = 'starting';
  failure: PluginFailure | undefined;
  mem!: GuestMemory;
  exports!: WebAssembly.Exports;
  #nextContextId = ROOT_CONTEXT_ID + 1;

  /** The context of the callback being run, and the one proxy_set_effective_context switched to. */
  current: ContextRecord | undefined;
  effective: ContextRecord | undefined;

  /** Per-callback data only visible while the matching callback runs. */
  callResponse: { headers: HeaderPairs; body: Uint8Array; trailers: HeaderPairs; status: number } | undefined;
  foreignResult: Uint8Array | undefined;
  grpcReceive: { metadata?: HeaderPairs; message?: Uint8Array; status?: number; statusMessage?: string } | undefined;

  activeStreams = 0;
  /** Outstanding http/grpc calls and foreign functions: a VM with any is not idle. */
  pendingAsync = 0;
  lastUsed = performance.now();
  tickTimer: NodeJS.Timeout | undefined;
  /** ABI 0.1.0 proxy_get_configuration answers the VM configuration in on_vm_start, the plugin's in on_configure. */
  legacyConfiguration: Uint8Array = new Uint8Array(0);
  /** proxy_set_property writes made outside any stream. */
  readonly propertyOverlay = new Map<string, Uint8Array>();
  #nextCallId = 1;

  /** Set by a hostcall that decided the VM must die (proc_exit, budget) even if the guest swallows the unwind. */
  #doomed: GuestAbort | undefined;

  #epoch = 0;
  /** A memory.grow was refused during the current callback: a trap that follows is memory exhaustion. */
  #growRefused = false;
  #fuelEpoch = -1;
  #budgetStart = 0;

  private constructor(compiled: CompiledPlugin, settings: VmSettings, services: HostServices, hooks: VmHooks) {
    this.compiled = compiled;
    this.settings = settings;
    this.services = services;
    this.#hooks = hooks;
  }

  get plugin(): string {
    return this.settings.plugin;
  }

  get active(): ContextRecord | undefined {
    return this.effective ?? this.current;
  }

  get busy(): boolean {
    return this.activeStreams > 0 || this.pendingAsync > 0 || this.tickTimer !== undefined;
  }

  /** Instantiates and starts a VM: module start, root context, on_vm_start, on_configure. Throws PluginFailure. */
  static start(compiled: CompiledPlugin, settings: VmSettings, services: HostServices, hooks: VmHooks): PluginVm {
    const vm = new PluginVm(compiled, settings, services, hooks);
    vm.#instantiate();
    return vm;
  }

  #instantiate(): void {
    const wasi = createWasi(this);
    const imports: WebAssembly.Imports = {
      env: createHostImports(this),
      wasi_snapshot_preview1: wasi,
      wasi_unstable: wasi,
      [FUEL_IMPORT_MODULE]: { [FUEL_IMPORT_NAME]: () => this.#refillFuel(), [GROW_IMPORT_NAME]: (pages: number) => this.#grow(pages) },
    };
    let instance: WebAssembly.Instance;
    try {
      instance = new WebAssembly.Instance(this.compiled.module, imports);
    } catch (err) {
      throw this.fail(new PluginFailure(this.plugin, 'start_failed', `instantiation failed: ${(err as Error).message}`, err));
    }
    const ex = instance.exports;
    this.exports = ex;
    this.mem = new GuestMemory(ex.memory as WebAssembly.Memory);
    this.mem.allocator = (ex.proxy_on_memory_allocate ?? ex.malloc) as ((n: number) => number) | undefined;
    this.cb = bindCallbacks(ex);
    this.#runStart(ex);
    this.contexts.set(this.root);
    this.invoke2(this.root, this.cb.onContextCreate, this.root.id, 0);
    this.legacyConfiguration = this.settings.vmConfiguration;
    if (this.cb.onVmStart !== undefined && this.invoke2(this.root, this.cb.onVmStart, this.root.id, this.settings.vmConfiguration.length) === 0) {
      throw this.fail(new PluginFailure(this.plugin, 'start_failed', 'proxy_on_vm_start returned false'));
    }
    this.legacyConfiguration = this.settings.pluginConfiguration;
    if (this.cb.onConfigure !== undefined && this.invoke2(this.root, this.cb.onConfigure, this.root.id, this.settings.pluginConfiguration.length) === 0) {
      throw this.fail(new PluginFailure(this.plugin, 'configure_failed', 'proxy_on_configure returned false (the plugin rejected its configuration)'));
    }
    this.state = 'ready';
  }

  /** The module's own start function, then `_initialize` (+ `main`/`__main_void`) for reactors or `_start` for commands; proc_exit(0) during start is success. */
  #runStart(ex: WebAssembly.Exports): void {
    const call = (name: string): void => {
      const fn = ex[name];
      if (typeof fn !== 'function') return;
      this.current = this.root;
      this.#epoch++;
      try {
        (fn as (argc: number, argv: number) => unknown)(0, 0);
      } catch (err) {
        if (err instanceof ProcExit && err.code === 0 && this.#doomed === undefined) return;
        const failure = classifyFailure(this.plugin, this.#doomed ?? err, false);
        throw this.fail(new PluginFailure(this.plugin, failure.reason === 'cpu_budget' ? 'cpu_budget' : 'start_failed', `${name}: ${failure.message}`, err));
      } finally {
        this.current = undefined;
      }
      if (this.#doomed !== undefined) throw this.fail(this.#doomed);
    };
    call(START_EXPORT_NAME);
    if (typeof ex._initialize === 'function') {
      call('_initialize');
      call(typeof ex.main === 'function' ? 'main' : '__main_void');
    } else call('_start');
  }

  /** WASI proc_exit: success only while starting with code 0; anything else kills the VM. */
  procExit(code: number): never {
    if (this.state === 'starting' && code === 0) throw new ProcExit(0);
    return this.abort('proc_exit', `the plugin called proc_exit(${code})`);
  }

  onStreamReleased(): void {
    // The owner acts only on a VM without streams (it may close a retired one); while others run there is nothing to tell.
    if (this.activeStreams === 0) this.#hooks.onStreamReleased(this);
  }

  newContextId(): number {
    return this.#nextContextId++;
  }

  /** Tokens for http calls, gRPC calls and streams share one sequence, so a token names one callout. */
  nextCallId(): number {
    return this.#nextCallId++;
  }

  get grpcClients(): GrpcClients {
    return this.services.grpcClients;
  }

  deliverHttpCallResponse(token: number, res: HttpCallResponse | undefined): void {
    this.pendingAsync--;
    this.runAsync(this.root, (vm) => {
      const headers = res?.headers ?? [];
      const status = Number(headers.find(([k]) => k === ':status')?.[1] ?? 0) | 0;
      vm.callResponse = { headers, body: res?.body ?? new Uint8Array(0), trailers: res?.trailers ?? [], status };
      try {
        vm.invoke5(vm.root, vm.cb.onHttpCallResponse, vm.root.id, token, res === undefined ? 0 : Math.max(1, headers.length), vm.callResponse.body.length, vm.callResponse.trailers.length);
      } finally {
        vm.callResponse = undefined;
      }
    });
  }

  deliverForeignResult(functionId: number, bytes: Uint8Array): void {
    this.pendingAsync--;
    this.runAsync(this.root, (vm) => {
      vm.foreignResult = bytes;
      try {
        vm.invoke3(vm.root, vm.cb.onForeignFunction, vm.root.id, functionId, bytes.length);
      } finally {
        vm.foreignResult = undefined;
      }
    });
  }

  queueReady(token: number): void {
    this.runAsync(this.root, (vm) => vm.invoke2(vm.root, vm.cb.onQueueReady, vm.root.id, token));
  }

  /**
   * Calls guest callback `fn` (one of `cb`, with exactly the arguments its slot takes) with `ctx` as the current
   * context. A missing export answers 0 (Continue / void) and costs nothing else. Throws PluginFailure (and the VM is
   * failed) when the guest traps, exits, or runs out of budget.
   */
  invoke1(ctx: ContextRecord, fn: Guest1 | undefined, a: number): number {
    return fn === undefined ? 0 : this.#run(ctx, fn, 1, a, 0, 0, 0, 0);
  }

  invoke2(ctx: ContextRecord, fn: Guest2 | undefined, a: number, b: number): number {
    return fn === undefined ? 0 : this.#run(ctx, fn, 2, a, b, 0, 0, 0);
  }

  invoke3(ctx: ContextRecord, fn: Guest3 | undefined, a: number, b: number, c: number): number {
    return fn === undefined ? 0 : this.#run(ctx, fn, 3, a, b, c, 0, 0);
  }

  invoke5(ctx: ContextRecord, fn: Guest5 | undefined, a: number, b: number, c: number, d: number, e: number): number {
    return fn === undefined ? 0 : this.#run(ctx, fn, 5, a, b, c, d, e);
  }

  /** The guest call with exactly `arity` arguments: each arm is its own call site (see guest-callbacks.ts on why). */
  #run(ctx: ContextRecord, fn: Guest0 | Guest1 | Guest2 | Guest3 | Guest5, arity: 0 | 1 | 2 | 3 | 5, a: number, b: number, c: number, d: number, e: number): number {
    if (this.state === 'failed' || this.state === 'closed') throw this.failure ?? new PluginFailure(this.plugin, 'unavailable', 'the VM is closed');
    const prevCurrent = this.current;
    const prevEffective = this.effective;
    this.current = ctx;
    this.effective = undefined;
    this.#epoch++;
    this.#growRefused = false;
    let result: number;
    try {
      if (arity === 1) result = (fn as Guest1)(a);
      else if (arity === 2) result = (fn as Guest2)(a, b);
      else if (arity === 3) result = (fn as Guest3)(a, b, c);
      else if (arity === 5) result = fn(a, b, c, d, e);
      else result = (fn as Guest0)();
    } catch (err) {
      // A doomed VM's trap or unwind is reported as what doomed it (budget, proc_exit), not as the trap itself.
      throw this.fail(this.#doomed ?? err);
    } finally {
      this.current = prevCurrent;
      this.effective = prevEffective;
    }
    if (this.#doomed !== undefined) throw this.fail(this.#doomed);
    return result >>> 0;
  }

  /** Calls any export by name with `ctx` current (embedders' extensions and tests); same failure rules as invoke. */
  callExport(ctx: ContextRecord, name: string, args: readonly (number | bigint)[]): number {
    const fn = this.exports[name];
    if (typeof fn !== 'function') throw new PluginFailure(this.plugin, 'host_error', `no export named ${name}`);
    const call = fn as (...a: (number | bigint)[]) => number;
    return this.#run(ctx, () => call(...args), 0, 0, 0, 0, 0, 0);
  }

  /** Marks the VM dead from inside a hostcall; the throw unwinds the guest, and the invoke fails the VM even if the guest catches it. */
  abort(reason: GuestAbort['reason'], message: string): never {
    const err = new GuestAbort(reason, message);
    this.#doomed ??= err;
    throw err;
  }

  /** memory.grow, rewritten into this call: same result (-1 when refused), but a refusal is remembered for classification. */
  #grow(pages: number): number {
    try {
      return this.mem.memory.grow(pages >>> 0);
    } catch {
      this.#growRefused = true;
      return -1;
    }
  }

  /** Called by the instrumented guest when its fuel runs out: a new chunk, or -1 (the guest then traps) once the budget is spent. */
  #refillFuel(): number {
    if (this.#doomed !== undefined) return -1;
    if (this.#fuelEpoch !== this.#epoch) {
      this.#fuelEpoch = this.#epoch;
      this.#budgetStart = performance.now();
      return FUEL_CHUNK;
    }
    const spent = performance.now() - this.#budgetStart;
    if (spent > this.settings.cpuMs) {
      this.#doomed = new GuestAbort('cpu_budget', `callback ran ${spent.toFixed(1)} ms, over its CPU budget of ${this.settings.cpuMs} ms`);
      return -1;
    }
    return FUEL_CHUNK;
  }

  /** Fails the VM (once) and returns the failure to throw. */
  fail(err: unknown): PluginFailure {
    if (this.state === 'failed' && this.failure !== undefined) return this.failure;
    let atCap = false;
    try {
      atCap = this.#growRefused || (this.mem !== undefined && this.mem.memory.buffer.byteLength >= this.compiled.maxMemoryBytes);
    } catch {
      atCap = false;
    }
    const failure = classifyFailure(this.plugin, err, atCap);
    this.state = 'failed';
    this.failure = failure;
    this.#stopTimers();
    // Streams paused in this VM are told, so their requests do not hang (envoyproxy/envoy#38801); vmFailed wakes only a
    // paused one. Listed before the hooks run: they may close the VM, which empties the table.
    const streams = this.contexts.list();
    this.services.logger.warn({ plugin: this.plugin, reason: failure.reason, err: failure }, 'plugin VM failed');
    this.#hooks.onFailed(this, failure);
    for (const s of streams) if (s.kind === 'stream') s.vmFailed(failure);
    return failure;
  }

  setTickPeriod(ms: number): void {
    if (this.tickTimer !== undefined) clearInterval(this.tickTimer);
    this.tickTimer = undefined;
    if (ms <= 0 || this.state === 'failed' || this.state === 'closed') return;
    this.tickTimer = setInterval(() => this.runAsync(this.root, (vm) => vm.invoke1(vm.root, vm.cb.onTick, vm.root.id)), ms);
    this.tickTimer.unref();
  }

  /** Runs a guest callback outside any request (tick, queue, callout): a failure fails the VM, never the caller. */
  runAsync(ctx: ContextRecord, body: (vm: PluginVm) => void): void {
    if (this.state !== 'ready') return;
    this.lastUsed = performance.now();
    try {
      body(this);
    } catch (err) {
      if (!(err instanceof PluginFailure)) this.fail(err);
    }
  }

  #stopTimers(): void {
    if (this.tickTimer !== undefined) clearInterval(this.tickTimer);
    this.tickTimer = undefined;
  }

  /** Graceful shutdown: on_done and on_delete for the root context, then the VM is unusable. */
  close(): void {
    this.#stopTimers();
    if (this.state === 'ready') {
      try {
        this.invoke1(this.root, this.cb.onDone, this.root.id);
        this.invoke1(this.root, this.cb.onDelete, this.root.id);
      } catch {
        // A plugin that fails while shutting down has nothing left to protect; the failure is already logged.
      }
    }
    if (this.state !== 'failed') this.state = 'closed';
    this.contexts.clear();
  }
}
