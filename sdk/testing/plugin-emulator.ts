/**
 * The plugin emulator for tests: loads a .wasm into weft's own PluginHost (the same loader, VM, hostcalls and filter
 * chain the runtime uses — no second ABI implementation), then lets a test feed requests, fire ticks, answer HTTP
 * callouts and read logs and metrics. Modelled on proxy-wasm-go-sdk's proxytest, but against the compiled module.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { PluginConfig } from '../../runtime/config/config-schema.js';
import type { LogFields, Logger, LogLevel } from '../../runtime/log.js';
import { MetricsRegistry } from '../../runtime/telemetry/metrics-registry.js';
import { CRYPTO_VERIFY_FUNCTION, registerCryptoForeignFunctions } from '../../runtime/wasm/crypto-foreign-functions.js';
import { ForeignFunctionRegistry } from '../../runtime/wasm/foreign-function.js';
import type { HttpCallFn } from '../../runtime/wasm/host-services.js';
import { type LoadResult, PluginHost } from '../../runtime/wasm/plugin-host.js';
import type { PluginVm } from '../../runtime/wasm/plugin-vm.js';
import type { PropertyValue } from '../../runtime/wasm/properties.js';
import type { StreamInfo } from '../../runtime/wasm/stream-info.js';
import { EmulatedStream } from './emulated-stream.js';
import { HttpCallQueue } from './http-call-queue.js';

export interface EmulatorOptions {
  /** Path of a .wasm file, or its bytes. */
  wasm: string | Uint8Array;
  /** Plugin configuration, delivered as JSON (a string is passed through as is, e.g. to test a non-JSON config). */
  config?: unknown;
  /** Plugin name (plugin_name, plugin_vm_id); default "plugin". */
  name?: string;
  /** Istio's pluginName, the root id the SDK picks a root context by (plugin_root_id); default "", as in Istio. */
  pluginName?: string;
  failStrategy?: PluginConfig['failStrategy'];
  limits?: { cpuMs: number; memoryMb: number };
  env?: Record<string, string>;
  /** Host services reachable through proxy_call_foreign_function (e.g. weft's shared rate limiter); weft.crypto.verify is always added. */
  foreignFunctions?: ForeignFunctionRegistry;
  /** Node-level properties every request sees. */
  nodeProperties?: Record<string, PropertyValue>;
  /** Where callouts go; by default they queue in `httpCalls` for the test to answer. */
  httpCall?: HttpCallFn;
  /** The level the host reports to the plugin (proxy_get_log_level); default debug. */
  logLevel?: Exclude<LogLevel, 'off'>;
}

const RANK = { trace: 0, debug: 1, info: 2, warn: 3, error: 4, off: 5 } as const;

/** A host logger that records instead of printing, so test output stays readable; `enabled` drives the plugin's level. */
function recordingLogger(level: LogLevel, lines: { level: LogLevel; msg: string; fields: LogFields }[]): Logger {
  const at = (l: LogLevel) => (fields: LogFields, msg: string) => {
    if (RANK[l] >= RANK[level]) lines.push({ level: l, msg, fields });
  };
  // Logger's writer is private to the runtime's class; this object has its whole public surface.
  return { component: 'wasm', enabled: (l: LogLevel) => RANK[l] >= RANK[level], trace: at('trace'), debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') } as unknown as Logger;
}

export interface PluginLogRecord {
  level: number;
  message: string;
}

/** Log levels as the plugin passes them (proxy_log_level_t). */
export const PluginLogLevel = { trace: 0, debug: 1, info: 2, warn: 3, error: 4, critical: 5 } as const;

/** The plugin was refused at load (it failed to start or rejected its configuration). */
export class EmulatorLoadError extends Error {
  readonly problems: { plugin: string; reason: string }[];

  constructor(problems: { plugin: string; reason: string }[]) {
    super(problems.map((p) => `${p.plugin}: ${p.reason}`).join('; '));
    this.problems = problems;
    this.name = 'EmulatorLoadError';
  }
}

export class PluginEmulator {
  readonly host: PluginHost;
  readonly metrics: MetricsRegistry;
  readonly foreignFunctions: ForeignFunctionRegistry;
  readonly httpCalls: HttpCallQueue;
  readonly logs: PluginLogRecord[] = [];
  /** What the host itself logged (VM failures, refused configurations), for assertions. */
  readonly hostLogs: { level: LogLevel; msg: string; fields: LogFields }[] = [];
  readonly name: string;
  #config: PluginConfig;
  readonly #tmpDir: string | undefined;

  private constructor(options: EmulatorOptions, url: string, tmpDir: string | undefined) {
    this.name = options.name ?? 'plugin';
    this.metrics = new MetricsRegistry();
    this.foreignFunctions = options.foreignFunctions ?? new ForeignFunctionRegistry();
    // weft's host services every node offers; the shared limiter and breakers come from the caller's registry.
    if (this.foreignFunctions.lookup(CRYPTO_VERIFY_FUNCTION) === undefined) registerCryptoForeignFunctions(this.foreignFunctions);
    this.httpCalls = new HttpCallQueue();
    this.#tmpDir = tmpDir;
    this.host = new PluginHost({
      metrics: this.metrics,
      foreignFunctions: this.foreignFunctions,
      httpCall: options.httpCall ?? this.httpCalls.send,
      idleMs: 0,
      logger: recordingLogger(options.logLevel ?? 'debug', this.hostLogs),
      nodeProperties: options.nodeProperties ?? {},
      pluginLog: (_plugin, level, message) => this.logs.push({ level, message }),
    });
    this.#config = {
      name: this.name,
      url,
      phase: 'UNSPECIFIED_PHASE',
      priority: 0,
      failStrategy: options.failStrategy ?? 'FAIL_CLOSE',
      config: options.config,
      ...(options.limits === undefined ? {} : { limits: options.limits }),
      ...(options.pluginName === undefined ? {} : { pluginName: options.pluginName }),
      ...(options.env === undefined ? {} : { vmConfig: { env: options.env } }),
    };
  }

  /** Loads and starts the plugin (start, on_vm_start, on_configure); rejects with EmulatorLoadError if it refuses. */
  static async create(options: EmulatorOptions): Promise<PluginEmulator> {
    let url: string;
    let tmpDir: string | undefined;
    if (typeof options.wasm === 'string') url = pathToFileURL(resolve(options.wasm)).href;
    else {
      tmpDir = await mkdtemp(join(tmpdir(), 'weft-emulator-'));
      const file = join(tmpDir, 'plugin.wasm');
      await writeFile(file, options.wasm);
      url = pathToFileURL(file).href;
    }
    const emu = new PluginEmulator(options, url, tmpDir);
    const result = await emu.host.load([emu.#config]);
    if (!result.ok) {
      await emu.close();
      throw new EmulatorLoadError(result.problems);
    }
    return emu;
  }

  /** The running plugin configuration. */
  get config(): unknown {
    return this.#config.config;
  }

  /**
   * Delivers a new configuration the way the runtime does on reload: a fresh VM is started with it, and if the plugin
   * rejects it (onConfigure false) the result lists the problem and the previous configuration keeps serving.
   */
  async reconfigure(config: unknown): Promise<LoadResult> {
    const next: PluginConfig = { ...this.#config, config };
    const result = await this.host.load([next]);
    if (result.ok) this.#config = next;
    return result;
  }

  /** The plugin's current VM; throws when there is none ready (it failed, or no request started one since). */
  get vm(): PluginVm {
    const vm = this.host.runtimeOf(this.name)?.vm;
    if (vm === undefined || vm.state !== 'ready') throw new Error(`plugin ${this.name} has no ready VM`);
    return vm;
  }

  /** A new request through the plugin; `info` supplies source/destination principals and other properties. */
  stream(info: StreamInfo = {}): EmulatedStream {
    return new EmulatedStream(this.host.createStream([this.name], info));
  }

  /** Fires the root context's proxy_on_tick once (the host's timer also runs if the plugin set a period). */
  tick(): void {
    const vm = this.vm;
    vm.runAsync(vm.root, (v) => v.invoke1(v.root, v.cb.onTick, v.root.id));
  }

  /** Lets callouts and foreign-function answers the test settled reach the plugin. */
  async settle(): Promise<void> {
    for (let i = 0; i < 5; i++) await new Promise<void>((r) => setImmediate(r));
  }

  /** Log lines at `level` or above. */
  logsAtLeast(level: number): string[] {
    return this.logs.filter((l) => l.level >= level).map((l) => l.message);
  }

  /** The value of a plugin-defined metric (sum over label sets), or undefined when it was never defined. */
  async metricValue(name: string): Promise<number | undefined> {
    const m = this.metrics.registry.getSingleMetric(name);
    if (m === undefined) return undefined;
    const data = await m.get();
    const values = data.values as { metricName?: string; value: number }[];
    // A histogram's value is its sample count.
    if (String(data.type) === 'histogram') return values.filter((v) => v.metricName === `${name}_count`).reduce((n, v) => n + v.value, 0);
    return values.reduce((n, v) => n + v.value, 0);
  }

  async close(): Promise<void> {
    this.host.close();
    if (this.#tmpDir !== undefined) await rm(this.#tmpDir, { recursive: true, force: true });
  }
}
