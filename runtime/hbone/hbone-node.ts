/** One node's zero-trust L4 pieces wired together: certificates for hosted workloads, the HBONE server with authorization and telemetry, the HBONE client and the outbound HBONE decision. */
import os from 'node:os';
import { createLogger } from '../log.js';
import { caClientFromConfig } from '../identity/ca-client-from-config.js';
import { nodeCheckedCaClient } from '../identity/node-checked-ca-client.js';
import { CertificateManager } from '../identity/certificate-manager.js';
import { principalOf } from '../identity/spiffe-id.js';
import { LiveConnections } from '../authz/live-connections.js';
import { listen, type BoundListener } from '../l4/listener.js';
import { connectUpstream } from '../l4/upstream-connect.js';
import { formatAddr, type SocketAddr } from '../l4/original-destination.js';
import type { Route } from '../l4/route.js';
import type { Egress } from '../l4/egress.js';
import type { Drain } from '../drain.js';
import type { L7Handoff } from '../l4/connection-proxy.js';
import type net from 'node:net';
import type { ProxyState } from '../state/proxy-state.js';
import type { Workload } from '../state/state-snapshot.js';
import type { TcpTelemetry } from '../telemetry/tcp-telemetry.js';
import { tcpLabels } from '../telemetry/connection-labels.js';
import { createHboneServer, type HboneServer, type InboundTunnel, type TunnelClosed } from './hbone-server.js';
import { HboneClient, type HboneStream } from './hbone-client.js';
import { tunnelAuthorization } from './hbone-authz.js';
import { baggageFor } from './hbone-headers.js';

const log = createLogger('hbone');

/** How an outbound connection reaches its destination over HBONE (ztunnel outbound step 7). */
export interface HbonePlan {
  /** SPIFFE IDs, as access logs print them. */
  sourceIdentity: string;
  destinationIdentity: string;
  /** The same without `spiffe://`, as metric labels carry them. */
  sourcePrincipal: string;
  /** Set when the tunnel goes to the service's waypoint (L7 happens there, not here). */
  waypoint?: string;
  destinationPrincipal: string;
  connect(signal: AbortSignal, timeoutMs: number): Promise<HboneStream>;
}

export interface HboneNodeOptions {
  state: ProxyState;
  telemetry: TcpTelemetry;
  /** weft's own listener ports: CONNECTs to them are refused as loops. */
  ownPorts: () => ReadonlySet<number>;
  /** The L7 proxy, which serves tunnels that reach this node as a waypoint. */
  l7?: () => L7Handoff | undefined;
  /** Graceful drain: inbound tunnels get the drain deadline, then are closed. */
  drain?: Drain;
  /** SO_REUSEPORT on the HBONE listeners: each worker thread binds its own (runtime/workers). */
  reusePort?: boolean;
  /** In-pod capture: the pod (by one of its IPs) whose namespace tunnels and deliveries are opened from. */
  egressFor?: (ip: string) => Egress | undefined;
}

function isLocalAddress(ip: string): boolean {
  if (ip.startsWith('127.') || ip === '::1') return true;
  return Object.values(os.networkInterfaces()).some((list) => list?.some((a) => a.address === ip) === true);
}

/** How a tunnel's TCP connection is opened: from the client pod's namespace (in-pod), else from its address when local. */
function sourceOf(source: SocketAddr, egress: Egress | undefined): { sourceAddress?: string; egress?: Egress } {
  // The pod address keys the pool even with an egress: tunnels of different pods never share a connection.
  if (egress !== undefined) return { sourceAddress: source.address, egress };
  return isLocalAddress(source.address) ? { sourceAddress: source.address } : {};
}

export class HboneNode {
  readonly certificates: CertificateManager;
  readonly client: HboneClient;
  readonly server: HboneServer;
  readonly live = new LiveConnections();
  readonly #opts: HboneNodeOptions;
  readonly #listeners = new Map<string, BoundListener>();
  readonly #unwatch: (() => void)[] = [];

  constructor(opts: HboneNodeOptions) {
    this.#opts = opts;
    const config = opts.state.current.config;
    const fromConfig = caClientFromConfig(config).caClient;
    const hosts = (id: string): boolean => opts.state.current.localWorkloads().some((w) => w.identity === id);
    // In a cluster the built-in CA signs only identities of pods on this node (an Istio CA checks this itself).
    const caClient = config.source === 'kubernetes' && config.identity.caAddress === undefined ? nodeCheckedCaClient(fromConfig, config.node, hosts) : fromConfig;
    this.certificates = new CertificateManager({
      caClient,
      ttlSeconds: config.identity.certTtlSeconds,
      isHosted: (id) => opts.state.current.localWorkloads().some((w) => w.identity === id),
    });
    this.client = new HboneClient({ certificates: this.certificates, settings: config.hbone, connectTimeoutMs: config.limits.connectTimeoutMs });
    const authz = tunnelAuthorization(this.live);
    this.server = createHboneServer({
      certificates: this.certificates,
      state: opts.state,
      settings: config.hbone,
      illegalPorts: opts.ownPorts(),
      waypointHandler: () => {
        const l7 = opts.l7?.();
        if (l7 === undefined) return undefined;
        return (stream, t) =>
          // The L7 proxy reads and writes the CONNECT stream as it would a socket.
          l7.handleConnection(stream as unknown as net.Socket, {
            ...(t.service === undefined ? {} : { service: t.service }),
            ...(t.servicePort === undefined ? {} : { servicePort: t.servicePort }),
            ...(t.target === undefined ? {} : { workload: t.target }),
            originalDst: t.destinationAddr,
            source: t.forwardedFor ?? t.peer,
            sourceIdentity: t.sourceIdentity,
            // The waypoint's own upstream tunnels carry the waypoint's identity (Istio's waypoint → ztunnel hop).
            upstreamIdentity: t.waypoint.identity,
          });
      },
      authorize: authz.authorize,
      connectUpstream: (target, tunnel) => {
        // In-pod: deliver from inside the destination pod, from the client's real address (ztunnel's inbound spoofing).
        const egress = opts.egressFor?.(target.address);
        const source = (tunnel.forwardedFor ?? tunnel.peer).address;
        return connectUpstream(target, { timeoutMs: opts.state.current.config.limits.connectTimeoutMs, ...(egress === undefined ? {} : { egress, source }) });
      },
      onConnection: (tunnel, control) => {
        authz.onConnection?.(tunnel, control);
        const release = opts.drain?.track({ destroy: () => control.close('drained') });
        if (release !== undefined) void control.closed.then(release);
        this.#record(tunnel, control.closed);
      },
      onReject: (event) => {
        const labels = tcpLabels({ reporter: 'destination', securityPolicy: 'mutual_tls', responseFlags: event.status === 401 ? 'DENY' : event.status === 'tls' ? 'TLS_FAILURE' : 'CONNECT', ...(event.sourceIdentity === undefined ? {} : { sourcePrincipal: principalOf(event.sourceIdentity) }) });
        opts.telemetry.failed(labels);
      },
    });
    this.#unwatch.push(this.live.watch(opts.state));
    // A snapshot derived by a change to other nodes' workloads keeps the same local list: nothing to track anew.
    this.#unwatch.push(opts.state.onUpdate((next, previous) => next.localWorkloads() !== previous.localWorkloads() && this.#trackIdentities()));
    this.#trackIdentities();
  }

  /** Binds `listeners.hbone` when configured, else one listener per hosted HBONE workload IP at `hbone.port` (in-pod style). */
  async start(signal: AbortSignal): Promise<void> {
    const config = this.#opts.state.current.config;
    const configured = config.listeners.hbone;
    if (configured !== undefined) {
      this.#listeners.set(configured.address, await listen('hbone', { address: configured.address, transparent: configured.transparent, signal, reusePort: this.#opts.reusePort === true }, (s) => this.server.accept(s)));
      return;
    }
    await this.#reconcileWorkloadListeners(signal);
    this.#unwatch.push(
      this.#opts.state.onUpdate((next, previous) => {
        if (next.localWorkloads() === previous.localWorkloads() && next.config.hbone.port === previous.config.hbone.port) return;
        void this.#reconcileWorkloadListeners(signal).catch((err: unknown) => log.warn({ err }, 'hbone listener update failed'));
      }),
    );
  }

  get ports(): Record<string, number> {
    return Object.fromEntries([...this.#listeners].map(([k, l]) => [k, l.port]));
  }

  /** The HBONE route for an outbound connection, or undefined when it goes plaintext (TCP workload, passthrough, unknown source). */
  plan(route: Route, source: SocketAddr, egress?: Egress): HbonePlan | undefined {
    const viaWaypoint = route.kind === 'service' || route.kind === 'workload' ? this.#waypointPlan(route, source, egress) : undefined;
    if (viaWaypoint !== undefined) return viaWaypoint;
    const destination: Workload | undefined = route.kind === 'service' ? route.endpoint : route.kind === 'workload' ? route.workload : undefined;
    if (destination === undefined || route.kind === 'refused' || route.kind === 'passthrough' || destination.protocol !== 'HBONE') return undefined;
    const snapshot = this.#opts.state.current;
    const sourceWorkload = snapshot.workloadByIp(source.address);
    // ztunnel denies unknown sources; weft's local mode (no capture) has clients that are no workload, and those stay plaintext.
    if (sourceWorkload === undefined || !sourceWorkload.local) return undefined;
    // A dual-stack pod is tunnelled to on the address the connection targets (the server checks :authority against it).
    const podIp = destination.addresses.includes(route.upstream.address) ? route.upstream.address : (destination.addresses[0] ?? route.upstream.address);
    const hbonePort = snapshot.config.hbone.port;
    return {
      sourceIdentity: sourceWorkload.identity,
      destinationIdentity: destination.identity,
      sourcePrincipal: principalOf(sourceWorkload.identity),
      destinationPrincipal: principalOf(destination.identity),
      connect: (signal, timeoutMs) =>
        this.client.connect({
          sourceIdentity: sourceWorkload.identity,
          ...sourceOf(source, egress),
          destination: route.upstream,
          destinationIdentities: [destination.identity],
          via: { address: podIp, port: hbonePort },
          forwardedFor: source,
          ...(route.kind === 'service' ? { forwardedHost: route.service.hostname } : {}),
          ...(baggageFor(sourceWorkload) === undefined ? {} : { baggage: baggageFor(sourceWorkload) }),
          timeoutMs,
          signal,
        }),
    };
  }

  /**
   * ztunnel outbound step 3: a service with a waypoint is reached through HBONE to the waypoint, `:authority` staying the
   * service VIP:port and the waypoint's identity expected. A waypoint on this very node is served locally (the L7 handoff).
   */
  #waypointPlan(route: Extract<Route, { kind: 'service' | 'workload' }>, source: SocketAddr, egress?: Egress): HbonePlan | undefined {
    // Service-addressed: the service's waypoint, `:authority` the VIP. Workload-addressed (step 6): the workload's
    // waypoint, `:authority` the original pod address.
    const ref = route.kind === 'service' ? route.service.waypoint : route.workload.waypoint;
    const authority = route.kind === 'service' ? (route.service.addresses[0] === undefined ? undefined : { address: route.service.addresses[0], port: route.servicePort.port }) : route.upstream;
    if (ref === undefined || authority === undefined) return undefined;
    const snapshot = this.#opts.state.current;
    const waypoint = snapshot.serviceByName(ref)?.endpoints.find((w) => w.status === 'Healthy' && w.protocol === 'HBONE');
    const sourceWorkload = snapshot.workloadByIp(source.address);
    // Traffic from the waypoint itself goes on to the destination, never back into the waypoint (ztunnel's loop check).
    if (waypoint === undefined || waypoint.local || sourceWorkload === undefined || !sourceWorkload.local || sourceWorkload === waypoint) return undefined;
    const via = { address: waypoint.addresses[0] ?? '', port: snapshot.config.hbone.port };
    return {
      sourceIdentity: sourceWorkload.identity,
      destinationIdentity: waypoint.identity,
      sourcePrincipal: principalOf(sourceWorkload.identity),
      destinationPrincipal: principalOf(waypoint.identity),
      waypoint: waypoint.uid,
      connect: (signal, timeoutMs) =>
        this.client.connect({
          sourceIdentity: sourceWorkload.identity,
          ...sourceOf(source, egress),
          destination: authority,
          destinationIdentities: [waypoint.identity],
          via,
          forwardedFor: source,
          ...(route.kind === 'service' ? { forwardedHost: route.service.hostname } : {}),
          timeoutMs,
          signal,
        }),
    };
  }

  /** Stops accepting tunnels (a graceful drain's first step); tunnels already open go on until close(). */
  async stopAccepting(): Promise<void> {
    await Promise.all([...this.#listeners.values()].map((l) => l.close()));
  }

  async close(): Promise<void> {
    for (const u of this.#unwatch) u();
    const listeners = [...this.#listeners.values()].map((l) => l.close());
    // Ending the server's connections first lets the listeners' close() complete.
    await this.server.close();
    await Promise.all(listeners);
    this.client.close();
    this.certificates.close();
  }

  /** Certificates held, for /config_dump (istioctl ztunnel-config certificates). */
  dump(): unknown {
    return this.certificates.identities().map((identity) => {
      const c = this.certificates.current(identity);
      return { identity, state: c === undefined ? 'pending' : 'available', serial: c?.leaf.serialNumber, notBefore: c?.notBefore.toISOString(), notAfter: c?.notAfter.toISOString(), pem: c?.certChainPem };
    });
  }

  /**
   * Prefetches certificates for the local workloads that speak HBONE, the ones whose tunnels need them at once. A local
   * TCP workload gets one on demand, only if it ever originates a tunnel, and keeps it while it is hosted here; a node
   * without HBONE workloads never creates its CA.
   */
  #trackIdentities(): void {
    const local = this.#opts.state.current.localWorkloads();
    const hosted = new Set(local.map((w) => w.identity));
    const prefetch = local.filter((w) => w.protocol === 'HBONE').map((w) => w.identity);
    const held = this.certificates.identities().filter((identity) => hosted.has(identity));
    this.certificates.track(new Set([...prefetch, ...held]));
  }

  async #reconcileWorkloadListeners(signal: AbortSignal): Promise<void> {
    const snapshot = this.#opts.state.current;
    const port = snapshot.config.hbone.port;
    for (const w of snapshot.localWorkloads()) {
      if (w.protocol !== 'HBONE') continue;
      for (const ip of w.addresses) {
        const address = formatAddr({ address: ip, port });
        if (this.#listeners.has(address)) continue;
        if (!isLocalAddress(ip)) {
          log.warn({ workload: w.uid, ip }, 'workload IP is not on this host; configure listeners.hbone (transparent) to receive its HBONE traffic');
          continue;
        }
        this.#listeners.set(address, await listen('hbone', { address, signal, reusePort: this.#opts.reusePort === true }, (s) => this.server.accept(s)));
      }
    }
  }

  #record(tunnel: InboundTunnel, closed: Promise<TunnelClosed>): void {
    const source = tunnel.snapshot.workloadByIp(tunnel.peer.address);
    const labels = tcpLabels({
      reporter: 'destination',
      ...(source === undefined ? {} : { source }),
      sourcePrincipal: principalOf(tunnel.sourceIdentity),
      destination: tunnel.destination,
      destinationPrincipal: principalOf(tunnel.destination.identity),
      securityPolicy: 'mutual_tls',
    });
    const telemetry = this.#opts.telemetry;
    telemetry.opened(labels);
    const started = Date.now();
    void closed.then((r) => {
      // Istio's convention at the destination: "received" is what the client sent.
      telemetry.closed(labels, r.bytesSent, r.bytesReceived);
      if (!telemetry.accessLog.enabled) return;
      telemetry.accessLog.write({
        start_time: new Date(started).toISOString(),
        kind: 'tcp',
        direction: 'inbound',
        listener: 'hbone',
        source_address: formatAddr(tunnel.forwardedFor ?? tunnel.peer),
        source_workload: source?.name,
        source_namespace: source?.namespace,
        source_principal: tunnel.sourceIdentity,
        upstream_host: formatAddr(tunnel.destinationAddr),
        destination_workload: tunnel.destination.name,
        destination_namespace: tunnel.destination.namespace,
        destination_principal: tunnel.destination.identity,
        connection_security_policy: 'mutual_tls',
        bytes_sent: r.bytesSent,
        bytes_received: r.bytesReceived,
        duration_ms: r.durationMs,
        error: r.error?.message,
      });
    });
  }
}
