/** The L7 half of a weft instance (plugin host, shared rate-limit/breaker state, HTTP proxy), loaded on first need so an L4-only node never pays for it. */
import type { WeftConfig } from './config/config-schema.js';
import type { MetricsRegistry } from './telemetry/metrics-registry.js';
import type { ProxyState } from './state/proxy-state.js';
import type { EndpointPicker } from './l4/endpoint-picker.js';
import type { L7Handoff } from './l4/connection-proxy.js';
import type { PluginHost, PluginHostOptions } from './wasm/plugin-host.js';
import type { SharedState, SharedStateOptions } from './shared-state/shared-state.js';
import type { L7Proxy, L7ProxyOptions } from './l7/l7-proxy.js';
import type { AccessLogSink } from './telemetry/access-log.js';
import type { FunctionHost, FunctionLoadResult } from './functions/function-host.js';
import type { ComponentFilterHost } from './functions/component-filter-host.js';
import { ForeignFunctionRegistry } from './wasm/foreign-function.js';
import { StateSnapshot } from './state/state-snapshot.js';
import { createLogger } from './log.js';
import { expandPluginInstances } from './state/plugin-instances.js';

const log = createLogger('l7-runtime');

/** Methods, paths and hosts can only be evaluated on HTTP requests. */
function hasL7Policy(config: WeftConfig): boolean {
  return config.policies.some((p) => p.rules.some((r) => (r.to ?? []).some(({ operation: o }) => [o.methods, o.notMethods, o.paths, o.notPaths, o.hosts, o.notHosts].some((v) => v !== undefined))));
}

/** A workload on this node is some service's or workload's waypoint: tunnels reaching it are proxied at L7. */
function hostsWaypoint(config: WeftConfig): boolean {
  const refs = [...config.services, ...config.workloads].flatMap((x) => (x.waypoint === undefined ? [] : [x.waypoint]));
  if (refs.length === 0) return false;
  const snapshot = new StateSnapshot(config, 0);
  return refs.some((ref) => snapshot.serviceByName(ref)?.endpoints.some((w) => w.local) === true);
}

/** Whether any destination of this config can be L7: anything less keeps the node on the L4 path only. */
export function requiresL7(config: WeftConfig): boolean {
  return config.functions.length > 0 || config.plugins.length > 0 || config.routes.length > 0 || config.trafficPolicies.length > 0 || config.rateLimits.length > 0 || hasL7Policy(config) || hostsWaypoint(config);
}

export interface L7RuntimeDeps {
  state: ProxyState;
  metrics: MetricsRegistry;
  picker: EndpointPicker;
  /** The HBONE/mTLS-aware upstream connector of the L4 path. */
  connectUpstream?: L7ProxyOptions['connectUpstream'];
  accessLogSink?: AccessLogSink;
  /** A worker thread's L7 lines as bytes, a batch at a time (WorkerRole.accessLogBytes); wins over accessLogSink for them. */
  accessLogBytes?: (batch: Uint8Array) => void;
  /** Worker threads: the process-wide memory backend and the plugins the primary compiled (runtime/workers). */
  memoryBackend?: SharedStateOptions['memoryBackend'];
  /** Index of the event loop this runtime serves on (the access log's `worker` field). */
  worker?: number;
  compiledPlugins?: PluginHostOptions['compiledPlugins'];
  /** The runtime's drain, which tracks every L7 downstream connection until it closes. */
  drain?: L7ProxyOptions['drain'];
}

export type PluginLoadResult = { ok: true } | { ok: false; problems: { plugin: string; reason: string }[] };

export class L7Runtime {
  /** Host services plugins reach through proxy_call_foreign_function (weft.ratelimit.*, weft.breaker.*, weft.crypto.verify, weft.counter.add). */
  readonly foreignFunctions: ForeignFunctionRegistry;
  readonly pluginHost: PluginHost;
  readonly shared: SharedState;
  readonly proxy: L7Proxy;
  /** Serverless wasi:http components (`functions:`), served as upstreams of this L7 path. */
  readonly functions: FunctionHost;
  /** `plugins:` entries that are components (weft:filter/http-filter), run in the same chain as proxy-wasm plugins. */
  readonly componentFilters: ComponentFilterHost;

  private constructor(foreignFunctions: ForeignFunctionRegistry, pluginHost: PluginHost, shared: SharedState, proxy: L7Proxy, functions: FunctionHost, componentFilters: ComponentFilterHost) {
    this.foreignFunctions = foreignFunctions;
    this.pluginHost = pluginHost;
    this.shared = shared;
    this.proxy = proxy;
    this.functions = functions;
    this.componentFilters = componentFilters;
  }

  static async create(config: WeftConfig, deps: L7RuntimeDeps): Promise<L7Runtime> {
    const [{ PluginHost }, { createSharedState }, { registerSharedStateForeignFunctions }, { createL7Proxy }, { createPluginFilters }, callouts, { registerCryptoForeignFunctions }, { registerCounterForeignFunction }] = await Promise.all([
      import('./wasm/plugin-host.js'),
      import('./shared-state/shared-state.js'),
      import('./shared-state/foreign-functions.js'),
      import('./l7/l7-proxy.js'),
      import('./l7/plugin-filters.js'),
      import('./plugin-callouts.js'),
      import('./wasm/crypto-foreign-functions.js'),
      import('./wasm/counter-foreign-function.js'),
    ]);
    const [{ FunctionHost }, { ComponentFilterHost }] = await Promise.all([import('./functions/function-host.js'), import('./functions/component-filter-host.js')]);
    const { createConnection } = await import('node:net');
    const shared = createSharedState(config.state, {
      metrics: deps.metrics,
      nodeName: config.node,
      logger: createLogger('shared-state'),
      rateLimits: config.rateLimits,
      circuitBreakers: config.circuitBreakers,
      ...(deps.memoryBackend === undefined ? {} : { memoryBackend: deps.memoryBackend }),
    });
    await shared.ready();
    const foreign = new ForeignFunctionRegistry();
    registerSharedStateForeignFunctions(foreign, shared);
    registerCryptoForeignFunctions(foreign);
    registerCounterForeignFunction(foreign, shared.backend);
    const pluginHost = new PluginHost({
      metrics: deps.metrics,
      foreignFunctions: foreign,
      httpCall: callouts.createPluginHttpCall(deps.state, deps.picker),
      grpc: callouts.createPluginGrpcResolver(deps.state, deps.picker),
      logger: createLogger('wasm'),
      nodeProperties: { 'node.id': config.node, 'node.metadata.CLUSTER_ID': 'Kubernetes' },
      ...(deps.compiledPlugins === undefined ? {} : { compiledPlugins: deps.compiledPlugins }),
    });
    // Functions call out through the L7 path, which is built after them (it needs their connector).
    const late: { proxy?: L7Proxy } = {};
    const functions = new FunctionHost({ metrics: deps.metrics, logger: createLogger('fn'), state: deps.state, l7: () => late.proxy });
    const componentFilters = new ComponentFilterHost({ metrics: deps.metrics, logger: createLogger('wasm') });
    const connect = functions.connector(deps.connectUpstream ?? ((address, port) => createConnection({ host: address, port })));
    const proxy = createL7Proxy({
      state: deps.state,
      metrics: deps.metrics,
      logger: createLogger('l7'),
      plugins: createPluginFilters(pluginHost, componentFilters, () => expandPluginInstances(deps.state.current.config)),
      connectUpstream: connect,
      ...(deps.drain === undefined ? {} : { drain: deps.drain }),
      // The L7 log hands over batches of newline-terminated lines; the app's sink takes one line at a time.
      accessLog: {
        worker: deps.worker ?? 0,
        ...(deps.accessLogBytes !== undefined
          ? { bytes: deps.accessLogBytes }
          : deps.accessLogSink === undefined
            ? {}
            : { sink: (text: string) => text.split('\n').forEach((l) => l !== '' && deps.accessLogSink?.(l)) }),
      },
    });
    late.proxy = proxy;
    const runtime = new L7Runtime(foreign, pluginHost, shared, proxy, functions, componentFilters);
    log.info({ plugins: config.plugins.map((p) => p.name) }, 'l7 path loaded');
    return runtime;
  }

  /** Loads or swaps the plugin set; on failure nothing changed and the caller must keep its previous config. */
  async applyPlugins(config: WeftConfig): Promise<PluginLoadResult> {
    const { splitPluginKinds } = await import('./functions/plugin-kind.js');
    const { wasm, components } = await splitPluginKinds(expandPluginInstances(config));
    // Component filters are admitted first and swapped in only if the proxy-wasm set loads too: all or nothing.
    const prepared = await this.componentFilters.prepare(components);
    if (!prepared.ok) return { ok: false, problems: prepared.problems };
    const r = await this.pluginHost.replace(wasm);
    if (!r.ok) {
      prepared.discard();
      return { ok: false, problems: r.problems };
    }
    prepared.commit();
    return { ok: true };
  }

  /** Admits `functions:`; on failure nothing changed and the caller must keep its previous config. */
  applyFunctions(config: WeftConfig): Promise<FunctionLoadResult> {
    return this.functions.apply(config);
  }

  /** Rate-limit rules and breaker tuning reload live; a backend change needs a restart. */
  applyLimits(config: WeftConfig): void {
    this.shared.update(config.rateLimits, config.circuitBreakers);
  }

  get handoff(): L7Handoff {
    return this.proxy;
  }

  async close(): Promise<void> {
    this.functions.close();
    await this.proxy.close();
    this.pluginHost.close();
    this.componentFilters.close();
    await this.shared.close();
  }
}
