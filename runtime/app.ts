/** Wires one weft instance: state, listeners (outbound, inbound, explicit proxy, localPorts), admin endpoints, telemetry and drain; reload swaps config atomically. */
import type net from 'node:net';
import os from 'node:os';
import type { WeftConfig, ListenerConfig } from './config/config-schema.js';
import { parseSocketAddress } from './config/socket-address.js';
import { DEFAULT_PORTS } from './config/defaults.js';
import { createLogger } from './log.js';
import { Drain } from './drain.js';
import { ProxyState } from './state/proxy-state.js';
import { MetricsRegistry } from './telemetry/metrics-registry.js';
import { AccessLog, type AccessLogSink } from './telemetry/access-log.js';
import { TcpTelemetry } from './telemetry/tcp-telemetry.js';
import { EndpointPicker } from './l4/endpoint-picker.js';
import { ConnectionProxy, type L7Handoff } from './l4/connection-proxy.js';
import { ExplicitProxy } from './l4/explicit-proxy.js';
import { listen, type BoundListener } from './l4/listener.js';
import { normalizeIp, originalDestination, remoteOf, type SocketAddr } from './l4/original-destination.js';
import { startHttpEndpoint, type HttpEndpoint } from './admin/http-endpoint.js';
import { adminRoutes, metricsRoutes, readinessRoutes } from './admin/admin-routes.js';
import { HboneNode } from './hbone/hbone-node.js';
import { hboneUpstreamConnector } from './hbone/hbone-upstream-connector.js';
import { L7Runtime, requiresL7 } from './l7-runtime.js';
import { WeftError } from './errors.js';
import { authorize } from './authz/authorizer.js';

const log = createLogger('app');

export interface AppOptions {
  /** Where access-log lines go (tests collect them); defaults to config.accessLog. */
  accessLogSink?: AccessLogSink;
  /** Called after POST /quitquitquit started the drain (the CLI exits the process). */
  onQuit?: () => void;
}

type DataListenerName = 'outbound' | 'inbound' | 'explicitProxy';

function listenerConfig(config: WeftConfig, name: DataListenerName): ListenerConfig {
  return config.listeners[name] ?? { address: `127.0.0.1:${DEFAULT_PORTS[name]}`, transparent: false };
}

export class App {
  readonly state: ProxyState;
  readonly metrics = new MetricsRegistry();
  readonly drain = new Drain();
  readonly picker = new EndpointPicker();
  readonly telemetry: TcpTelemetry;
  readonly proxy: ConnectionProxy;
  readonly explicitProxy: ExplicitProxy;
  /** Certificates, HBONE server/client and L4 authorization of this node. */
  readonly hbone: HboneNode;
  readonly #listeners = new Map<DataListenerName, BoundListener>();
  readonly #localPorts = new Map<string, BoundListener>();
  readonly #endpoints: HttpEndpoint[] = [];
  readonly #dumpSections = new Map<string, () => unknown>();
  readonly #opts: AppOptions;
  readonly #reloads;
  #l7: L7Handoff | undefined;
  #l7Runtime: L7Runtime | undefined;
  #l7Loading: Promise<L7Runtime> | undefined;
  #ready = false;
  #ownPorts = new Set<number>();
  readonly #localIps = new Set(['127.0.0.1', '::1', '0.0.0.0', '::']);

  constructor(config: WeftConfig, opts: AppOptions) {
    this.#opts = opts;
    this.state = new ProxyState(config);
    const accessLog = new AccessLog({ enabled: config.accessLog.enabled, ...(config.accessLog.path === undefined ? {} : { path: config.accessLog.path }), ...(opts.accessLogSink === undefined ? {} : { sink: opts.accessLogSink }) });
    this.telemetry = new TcpTelemetry(this.metrics, accessLog);
    this.#reloads = this.metrics.counter('weft_config_reloads_total', 'Configuration reloads by result', ['result']);
    this.metrics.gauge('weft_build_info', 'weft build information', ['version', 'node_version']).set({ version: '0.1.0', node_version: process.version }, 1);
    for (const addrs of Object.values(os.networkInterfaces())) for (const a of addrs ?? []) this.#localIps.add(a.address);
    this.hbone = new HboneNode({ state: this.state, telemetry: this.telemetry, ownPorts: () => this.#ownPorts, l7: () => this.#l7, drain: this.drain });
    this.addDumpSection('certificates', () => this.hbone.dump());
    this.proxy = new ConnectionProxy({
      state: this.state,
      picker: this.picker,
      telemetry: this.telemetry,
      drain: this.drain,
      limits: () => this.state.current.config.limits,
      isOwnListener: (addr) => this.#ownPorts.has(addr.port) && this.#localIps.has(addr.address),
      l7: () => this.#l7,
      logger: createLogger('proxy'),
      hbone: this.hbone,
      authorizeInbound: (conn) => authorize(this.state.current, conn),
      trackInbound: (conn, close) => this.hbone.live.add(conn, close),
    });
    this.explicitProxy = new ExplicitProxy({ proxy: this.proxy, state: this.state, metrics: this.metrics, logger: createLogger('explicit') });
  }

  get ready(): boolean {
    return this.#ready && !this.drain.draining;
  }

  /** Bound ports (port 0 in the config resolves to the real port here). */
  get ports(): Record<DataListenerName | 'admin' | 'metrics' | 'readiness', number | undefined> & { localPorts: Record<string, number> } {
    const endpointPort = (i: number): number | undefined => this.#endpoints[i]?.port;
    return {
      outbound: this.#listeners.get('outbound')?.port,
      inbound: this.#listeners.get('inbound')?.port,
      explicitProxy: this.#listeners.get('explicitProxy')?.port,
      admin: endpointPort(0),
      metrics: endpointPort(1),
      readiness: endpointPort(2),
      localPorts: Object.fromEntries([...this.#localPorts].map(([k, l]) => [k, l.port])),
    };
  }

  /** Replaces the L7 path (tests, embedders); normally the app loads its own when the config needs L7. */
  setL7Handoff(handoff: L7Handoff | undefined): void {
    this.#l7 = handoff;
  }

  /** The loaded L7 half (plugin host, shared state, HTTP proxy), if any destination has needed it yet. */
  get l7Runtime(): L7Runtime | undefined {
    return this.#l7Runtime;
  }

  /**
   * Makes `config`'s plugins, limits and L7 path ready before the config is served. Plugins that fail to load
   * reject the whole config: nothing changes and the running config keeps serving.
   */
  async #prepareL7(config: WeftConfig): Promise<{ ok: true } | { ok: false; problems: string[] }> {
    if (!requiresL7(config) && this.#l7Runtime === undefined) return { ok: true };
    this.#l7Loading ??= L7Runtime.create(config, {
      state: this.state,
      metrics: this.metrics,
      picker: this.picker,
      connectUpstream: hboneUpstreamConnector(this.state, this.hbone.client),
      ...(this.#opts.accessLogSink === undefined ? {} : { accessLogSink: this.#opts.accessLogSink }),
    });
    const runtime = await this.#l7Loading;
    this.#l7Runtime = runtime;
    const plugins = await runtime.applyPlugins(config);
    if (!plugins.ok) return { ok: false, problems: plugins.problems.map((p) => `plugin ${p.plugin}: ${p.reason}`) };
    const functions = await runtime.applyFunctions(config);
    if (!functions.ok) return { ok: false, problems: functions.problems.map((p) => `function ${p.fn}: ${p.reason}`) };
    runtime.applyLimits(config);
    this.#l7 ??= runtime.handoff;
    return { ok: true };
  }

  /** Adds a section to /config_dump (plugins, certificates, ...). */
  addDumpSection(name: string, section: () => unknown): void {
    this.#dumpSections.set(name, section);
  }

  /** A captured outbound connection headed for `originalDst` (what the 15001 listener does after reading it). */
  handleOutbound(socket: net.Socket, originalDst: SocketAddr, listener = 'outbound'): Promise<void> {
    return this.proxy.handle({ client: socket, destination: { kind: 'address', address: originalDst }, direction: 'outbound', listener, source: remoteOf(socket), originalDst });
  }

  /** A captured plaintext inbound connection for a local workload (the 15006 listener). */
  handleInbound(socket: net.Socket, originalDst: SocketAddr): Promise<void> {
    return this.proxy.handle({ client: socket, destination: { kind: 'address', address: originalDst }, direction: 'inbound', listener: 'inbound', source: remoteOf(socket), originalDst });
  }

  async start(): Promise<void> {
    const config = this.state.current.config;
    const signal = this.drain.signal;
    const l7 = await this.#prepareL7(config);
    if (!l7.ok) throw new WeftError('WEFT_ERR_PLUGIN_LOAD', `cannot start: ${l7.problems.join('; ')}`);
    const captured = (name: 'outbound' | 'inbound', transparent: boolean) => (socket: net.Socket) => {
      const dst = originalDestination(socket, transparent);
      if (dst === undefined) {
        log.warn({ listener: name, src: `${socket.remoteAddress}:${socket.remotePort}` }, 'connection has no original destination; is traffic captured by TPROXY or REDIRECT?');
        socket.resetAndDestroy();
        return;
      }
      void (name === 'outbound' ? this.handleOutbound(socket, dst) : this.handleInbound(socket, dst));
    };
    for (const name of ['outbound', 'inbound'] as const) {
      const cfg = listenerConfig(config, name);
      // Paused on accept: nothing is read into a Readable buffer before the copy takes the socket over (the L4 fast path).
      this.#listeners.set(name, await listen(name, { ...cfg, signal, pauseOnConnect: true }, captured(name, cfg.transparent)));
    }
    this.#listeners.set('explicitProxy', await listen('explicitProxy', { ...listenerConfig(config, 'explicitProxy'), signal }, (s) => this.explicitProxy.handle(s)));
    await this.hbone.start(signal);
    for (const l of this.#listeners.values()) this.#ownPorts.add(l.port);
    for (const port of Object.values(this.hbone.ports)) this.#ownPorts.add(port);
    await this.#reconcileLocalPorts(config);

    const sources = {
      state: this.state,
      metrics: this.metrics,
      isReady: () => this.ready,
      listeners: () => this.ports,
      quit: () => this.#opts.onQuit?.(),
      dumpSections: () => Object.fromEntries([...this.#dumpSections].map(([k, f]) => [k, f()])),
    };
    const endpoint = (name: string, address: string | undefined, fallback: string, routes: Parameters<typeof startHttpEndpoint>[2]) => startHttpEndpoint(name, address ?? fallback, routes);
    this.#endpoints.push(await endpoint('admin', config.listeners.admin, `127.0.0.1:${DEFAULT_PORTS.admin}`, adminRoutes(sources)));
    this.#endpoints.push(await endpoint('metrics', config.listeners.metrics, `0.0.0.0:${DEFAULT_PORTS.metrics}`, metricsRoutes(sources)));
    this.#endpoints.push(await endpoint('readiness', config.listeners.readiness, `0.0.0.0:${DEFAULT_PORTS.readiness}`, readinessRoutes(sources)));
    this.#ready = true;
    log.info({ node: config.node, ports: this.ports }, 'weft started');
  }

  /**
   * Applies a validated config: plugins load first (a plugin that fails rejects the whole config), then the snapshot
   * swaps atomically and localPorts are rebound only where they changed.
   */
  async reload(config: WeftConfig): Promise<{ ok: true } | { ok: false; problems: string[] }> {
    const l7 = await this.#prepareL7(config);
    if (!l7.ok) {
      this.recordRejectedReload();
      log.error({ problems: l7.problems }, 'configuration rejected; the previous configuration keeps serving');
      return l7;
    }
    const previous = this.state.current.config;
    this.state.update(config);
    await this.#reconcileLocalPorts(config);
    for (const name of ['outbound', 'inbound', 'explicitProxy'] as const) {
      if (JSON.stringify(previous.listeners[name]) !== JSON.stringify(config.listeners[name])) {
        log.warn({ listener: name }, 'listener address changes take effect on restart');
      }
    }
    this.#reloads.inc({ result: 'applied' });
    log.info({ version: this.state.current.version }, 'configuration reloaded');
    return { ok: true };
  }

  /** Counts a reload that was rejected (the watcher validates before calling reload). */
  recordRejectedReload(): void {
    this.#reloads.inc({ result: 'rejected' });
  }

  async #reconcileLocalPorts(config: WeftConfig): Promise<void> {
    const wanted = new Map(config.localPorts.map((lp) => [lp.listen, lp]));
    for (const [listenAddr, bound] of this.#localPorts) {
      if (!wanted.has(listenAddr)) {
        // Connections already accepted on a removed local port finish normally; only new ones stop.
        await bound.close();
        this.#localPorts.delete(listenAddr);
      }
    }
    for (const [listenAddr] of wanted) {
      if (this.#localPorts.has(listenAddr)) continue;
      const onConnection = (socket: net.Socket): void => {
        // Re-read the entry per connection: a reload may have pointed this port at another service.
        const entry = this.state.current.config.localPorts.find((lp) => lp.listen === listenAddr);
        const service = entry === undefined ? undefined : this.state.current.serviceByRef(entry.service);
        if (entry === undefined || service === undefined) return socket.resetAndDestroy() && undefined;
        const local = parseSocketAddress(listenAddr);
        void this.proxy.handle({
          client: socket,
          destination: { kind: 'service', service, port: entry.port },
          direction: 'outbound',
          listener: 'local-port',
          source: remoteOf(socket),
          originalDst: { address: service.addresses[0] ?? normalizeIp(local?.host), port: entry.port },
        });
      };
      this.#localPorts.set(listenAddr, await listen(`localPorts ${listenAddr}`, { address: listenAddr, signal: this.drain.signal, pauseOnConnect: true }, onConnection));
    }
  }

  /** Graceful drain: readiness goes false, listeners stop accepting, open connections get `deadlineMs`, then everything closes. */
  async shutdown(deadlineMs = this.state.current.config.limits.drainDeadlineMs): Promise<{ forced: number }> {
    this.#ready = false;
    const listeners = [...this.#listeners.values(), ...this.#localPorts.values()];
    await Promise.all([...listeners.map((l) => l.close()), this.hbone.stopAccepting()]);
    const result = await this.drain.drain(deadlineMs);
    // Connections the drain does not track (handshakes still in progress) end with the process.
    for (const l of listeners) l.destroyConnections();
    // What is left of HBONE: idle pooled tunnels' TLS connections both ways, certificate renewal timers.
    await this.hbone.close();
    await this.#l7Runtime?.close();
    await Promise.all(this.#endpoints.map((e) => e.close()));
    await this.telemetry.accessLog.close();
    log.info({ forced: result.forced }, 'weft stopped');
    return result;
  }
}

export async function createApp(config: WeftConfig, opts: AppOptions = {}): Promise<App> {
  const app = new App(config, opts);
  try {
    await app.start();
  } catch (err) {
    await app.shutdown(0);
    throw err;
  }
  return app;
}
