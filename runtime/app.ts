/** Wires one weft instance: state, listeners (outbound, inbound, explicit proxy, localPorts), admin endpoints, telemetry and drain; reload swaps config atomically. */
import type net from 'node:net';
import os from 'node:os';
import type { WeftConfig, ListenerConfig, PluginConfig } from './config/config-schema.js';
import type { MemoryBackend } from './shared-state/state-memory.js';
import type { CompiledPlugin } from './wasm/plugin-vm.js';
import { parseSocketAddress } from './config/socket-address.js';
import { DEFAULT_PORTS } from './config/defaults.js';
import { createLogger } from './log.js';
import { Drain } from './drain.js';
import { ProxyState } from './state/proxy-state.js';
import type { WorkloadChange } from './state/state-snapshot.js';
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
// Loaded in start() only when configured: an idle node without them does not hold their modules (dns-packet, ZDS).
import type { DnsProxy } from './dns/dns-proxy.js';
import type { InpodCapture } from './inpod/inpod-capture.js';

const log = createLogger('app');

export interface AppOptions {
  /** Where access-log lines go (tests collect them); defaults to config.accessLog. */
  accessLogSink?: AccessLogSink;
  /** Called after POST /quitquitquit started the drain (the CLI exits the process). */
  onQuit?: () => void;
  /** Set when this App is one of several worker threads (runtime/workers/worker-thread.ts). */
  worker?: WorkerRole;
}

/** What changes when an App is one event loop of several: the primary thread serves admin, metrics and readiness. */
export interface WorkerRole {
  /** Index of the event loop, 0-based (the access log's `worker` field). */
  id: number;
  /** The process-wide memory backend (rate limits in shared memory, breakers in the primary). */
  memoryBackend?: MemoryBackend;
  /** Plugins the primary fetched, verified and compiled. */
  compiledPlugins?: (config: PluginConfig) => CompiledPlugin | undefined;
  /** L7 access-log lines as bytes, a batch at a time, for the primary to write as they are (L4 lines use accessLogSink). */
  accessLogBytes?: (batch: Uint8Array) => void;
}

type DataListenerName = 'outbound' | 'inbound' | 'explicitProxy';

/** A rejected reload lists its problems; plugins that failed to load are also named, so a source can blame their objects. */
export type ReloadResult = { ok: true } | { ok: false; problems: string[]; pluginProblems?: { plugin: string; reason: string }[] };

function listenerConfig(config: WeftConfig, name: DataListenerName): ListenerConfig {
  return config.listeners[name] ?? { address: `127.0.0.1:${DEFAULT_PORTS[name]}`, transparent: false };
}

/** Whether `next` names the socket `previous` bound; port 0 pinned to the port it got (runtime/workers) is no change. */
function sameListener(previous: ListenerConfig | undefined, next: ListenerConfig | undefined, boundPort: number | undefined): boolean {
  if (JSON.stringify(previous) === JSON.stringify(next)) return true;
  if (previous === undefined || next === undefined || previous.transparent !== next.transparent) return false;
  const [a, b] = [parseSocketAddress(previous.address), parseSocketAddress(next.address)];
  return a !== undefined && b !== undefined && a.host === b.host && a.port === 0 && b.port === boundPort;
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
  /** The DNS proxy (15053), when `dns.enabled` or `listeners.dns` is set. */
  dns: DnsProxy | undefined;
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
  readonly #readinessGates: (() => boolean)[] = [];
  #ownPorts = new Set<number>();
  /** In-pod capture, when configured: listeners inside each enrolled pod, fed by the node agent over ZDS. */
  #inpod: InpodCapture | undefined;
  readonly #egressFor = (ip: string): ReturnType<InpodCapture['egressFor']> => this.#inpod?.egressFor(ip);
  readonly #localIps = new Set(['127.0.0.1', '::1', '0.0.0.0', '::']);

  constructor(config: WeftConfig, opts: AppOptions) {
    this.#opts = opts;
    this.state = new ProxyState(config);
    const accessLog = new AccessLog({
      enabled: config.accessLog.enabled,
      worker: opts.worker?.id ?? 0,
      ...(config.accessLog.path === undefined ? {} : { path: config.accessLog.path }),
      ...(opts.accessLogSink === undefined ? {} : { sink: opts.accessLogSink }),
    });
    this.telemetry = new TcpTelemetry(this.metrics, accessLog);
    this.#reloads = this.metrics.counter('weft_config_reloads_total', 'Configuration reloads by result', ['result']);
    this.metrics.gauge('weft_build_info', 'weft build information', ['version', 'node_version']).set({ version: '0.1.0', node_version: process.version }, 1);
    for (const addrs of Object.values(os.networkInterfaces())) for (const a of addrs ?? []) this.#localIps.add(a.address);
    const egressFor = this.#egressFor;
    this.hbone = new HboneNode({ state: this.state, telemetry: this.telemetry, ownPorts: () => this.#ownPorts, l7: () => this.#l7, drain: this.drain, reusePort: opts.worker !== undefined, egressFor });
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
      authorizeInbound: (conn, opts) => authorize(this.state.current, conn, opts),
      trackInbound: (conn, close) => this.hbone.live.add(conn, close),
      egressFor,
    });
    this.explicitProxy = new ExplicitProxy({ proxy: this.proxy, state: this.state, metrics: this.metrics, logger: createLogger('explicit') });
  }

  /** In-pod capture's pods on this event loop (a worker thread's are fed by the primary). */
  get inpod(): InpodCapture | undefined {
    return this.#inpod;
  }

  get ready(): boolean {
    // In-pod, as ztunnel: not ready until the node agent's snapshot is applied, nor while its connection is down.
    const inpodReady = this.#inpod?.zds === undefined || this.#inpod.zds.state === 'synced';
    return this.#ready && !this.drain.draining && inpodReady && this.#readinessGates.every((gate) => gate());
  }

  /** Readiness also waits for `gate` (a config source's first full sync). */
  addReadinessGate(gate: () => boolean): void {
    this.#readinessGates.push(gate);
  }

  /** Bound ports (port 0 in the config resolves to the real port here). */
  get ports(): Record<DataListenerName | 'admin' | 'metrics' | 'readiness' | 'dns', number | undefined> & { localPorts: Record<string, number> } {
    const endpointPort = (i: number): number | undefined => this.#endpoints[i]?.port;
    return {
      outbound: this.#listeners.get('outbound')?.port,
      inbound: this.#listeners.get('inbound')?.port,
      explicitProxy: this.#listeners.get('explicitProxy')?.port,
      admin: endpointPort(0),
      metrics: endpointPort(1),
      readiness: endpointPort(2),
      dns: this.dns?.port,
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
  async #prepareL7(config: WeftConfig): Promise<ReloadResult> {
    if (!requiresL7(config) && this.#l7Runtime === undefined) return { ok: true };
    this.#l7Loading ??= L7Runtime.create(config, {
      state: this.state,
      metrics: this.metrics,
      picker: this.picker,
      connectUpstream: hboneUpstreamConnector(this.state, this.hbone.client, this.#egressFor),
      drain: this.drain,
      ...(this.#opts.accessLogSink === undefined ? {} : { accessLogSink: this.#opts.accessLogSink }),
      ...(this.#opts.worker === undefined ? {} : { worker: this.#opts.worker.id }),
      ...(this.#opts.worker?.memoryBackend === undefined ? {} : { memoryBackend: this.#opts.worker.memoryBackend }),
      ...(this.#opts.worker?.compiledPlugins === undefined ? {} : { compiledPlugins: this.#opts.worker.compiledPlugins }),
      ...(this.#opts.worker?.accessLogBytes === undefined ? {} : { accessLogBytes: this.#opts.worker.accessLogBytes }),
    });
    const runtime = await this.#l7Loading;
    this.#l7Runtime = runtime;
    const plugins = await runtime.applyPlugins(config);
    if (!plugins.ok) return { ok: false, problems: plugins.problems.map((p) => `plugin ${p.plugin}: ${p.reason}`), pluginProblems: plugins.problems.map((p) => ({ plugin: p.plugin, reason: p.reason })) };
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

  /** The extra /config_dump sections, evaluated now. */
  dumpSections(): Record<string, unknown> {
    return Object.fromEntries([...this.#dumpSections].map(([k, f]) => [k, f()]));
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
    const reusePort = this.#opts.worker !== undefined;
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
      this.#listeners.set(name, await listen(name, { ...cfg, signal, pauseOnConnect: true, reusePort }, captured(name, cfg.transparent)));
    }
    this.#listeners.set('explicitProxy', await listen('explicitProxy', { ...listenerConfig(config, 'explicitProxy'), signal, reusePort }, (s) => this.explicitProxy.handle(s)));
    await this.hbone.start(signal);
    if (config.dns.enabled || config.listeners.dns !== undefined) {
      const { DnsProxy } = await import('./dns/dns-proxy.js');
      this.dns = new DnsProxy({ state: this.state, metrics: this.metrics, logger: createLogger('dns'), reusePort });
      await this.dns.start(config.listeners.dns ?? `127.0.0.1:${DEFAULT_PORTS.dns}`);
    }
    for (const l of this.#listeners.values()) this.#ownPorts.add(l.port);
    for (const port of Object.values(this.hbone.ports)) this.#ownPorts.add(port);
    await this.#reconcileLocalPorts(config);
    // One ZDS client per process: with several workers the primary owns it and every worker binds each pod's ports
    // beside the others with SO_REUSEPORT (runtime/inpod/pod-fanout.ts).
    if (config.inpod !== undefined) {
      const { InpodCapture } = await import('./inpod/inpod-capture.js');
      // Same handlers as the node listeners: one data path whichever way traffic was captured.
      this.#inpod = new InpodCapture({
        config: config.inpod,
        fedByPrimary: this.#opts.worker !== undefined,
        ports: { outbound: DEFAULT_PORTS.outbound, inbound: DEFAULT_PORTS.inbound, hbone: config.hbone.port, dns: DEFAULT_PORTS.dns },
        onOutbound: captured('outbound', false),
        onInbound: captured('inbound', false),
        onHbone: (s) => this.hbone.server.accept(s),
        ...(this.dns === undefined ? {} : { dns: this.dns.attach.bind(this.dns) }),
      });
      this.addDumpSection('inpod', () => this.#inpod?.dump());
      this.#inpod.start();
    }
    // One event loop of several: admin, metrics and readiness are the primary's, with every worker's data.
    if (this.#opts.worker !== undefined) {
      this.#ready = true;
      return;
    }

    const sources = {
      state: this.state,
      metrics: this.metrics,
      isReady: () => this.ready,
      listeners: () => this.ports,
      quit: () => this.#opts.onQuit?.(),
      dumpSections: () => this.dumpSections(),
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
  async reload(config: WeftConfig): Promise<ReloadResult> {
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
      if (!sameListener(previous.listeners[name], config.listeners[name], this.#listeners.get(name)?.port)) {
        log.warn({ listener: name }, 'listener address changes take effect on restart');
      }
    }
    this.#reloads.inc({ result: 'applied' });
    log.info({ version: this.state.current.version }, 'configuration reloaded');
    return { ok: true };
  }

  /**
   * Applies a change to workloads only (a Kubernetes source's pods on other nodes): the snapshot is derived from the
   * current one, swapped atomically, with no rebuild. The caller checked the change as a reload would.
   */
  patchWorkloads(change: WorkloadChange): ReloadResult {
    this.state.patch(change);
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
      this.#localPorts.set(listenAddr, await listen(`localPorts ${listenAddr}`, { address: listenAddr, signal: this.drain.signal, pauseOnConnect: true, reusePort: this.#opts.worker !== undefined }, onConnection));
    }
  }

  /**
   * Stops accepting everywhere (data listeners, HBONE, DNS over TCP, admin endpoints) and asks clients to go elsewhere:
   * HTTP/1 connections close after their in-flight response, HTTP/2 and HBONE sessions get GOAWAY. A successor that
   * took the sockets over keeps them open; this process only stops reading them. The admin endpoints stop too when
   * `handedOver` (the successor answers readiness); on a plain drain readiness keeps answering 503 until the end.
   */
  async stopAccepting(handedOver = false): Promise<void> {
    this.#ready = false;
    const listeners = [...this.#listeners.values(), ...this.#localPorts.values()];
    await Promise.all([...listeners.map((l) => l.close()), this.hbone.stopAccepting(), this.#inpod?.stopAccepting()]);
    this.dns?.stopAccepting();
    if (handedOver) for (const e of this.#endpoints) e.stopAccepting();
    this.hbone.server.goaway();
    this.#l7Runtime?.proxy.drain();
  }

  /** Graceful drain: readiness goes false, listeners stop accepting, open connections get `deadlineMs`, then everything closes. */
  async shutdown(deadlineMs = this.state.current.config.limits.drainDeadlineMs): Promise<{ forced: number }> {
    await this.stopAccepting();
    const listeners = [...this.#listeners.values(), ...this.#localPorts.values()];
    const result = await this.drain.drain(deadlineMs);
    // Connections the drain does not track (handshakes still in progress) end with the process.
    for (const l of listeners) l.destroyConnections();
    // What is left of HBONE: idle pooled tunnels' TLS connections both ways, certificate renewal timers.
    await this.hbone.close();
    this.dns?.close();
    await this.#inpod?.close();
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
