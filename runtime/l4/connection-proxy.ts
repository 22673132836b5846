/** Proxies one accepted connection at L4: route, connect (trying another endpoint once), hand over to L7 when attached, copy, then metrics and the access-log line. */
import type net from 'node:net';
import { WeftError, isCausedBy, weftErrorOf } from '../errors.js';
import type { Logger } from '../log.js';
import type { Drain } from '../drain.js';
import type { LimitsConfig } from '../config/config-schema.js';
import type { ProxyState } from '../state/proxy-state.js';
import type { Workload } from '../state/state-snapshot.js';
import type { L7Target } from '../l7/l7-context.js';
import type { TcpTelemetry } from '../telemetry/tcp-telemetry.js';
import { tcpLabels, type TcpLabels } from '../telemetry/connection-labels.js';
import type { EndpointPicker } from './endpoint-picker.js';
import { routeFor, type Destination, type Route } from './route.js';
import { connectUpstream } from './upstream-connect.js';
import { copyBidirectional, type CopyResult } from './copy.js';
import { formatAddr, type SocketAddr } from './original-destination.js';
import type { HbonePlan } from '../hbone/hbone-node.js';
import type { Egress } from './egress.js';
import type { AuthzDecision } from '../authz/authorizer.js';
import type { ConnectionAttributes } from '../authz/authz-policy.js';

export type Direction = 'outbound' | 'inbound';

/** What the L7 path receives when a destination has a plugin or L7 policy attached (see runtime/l7). */
export type { L7Target } from '../l7/l7-context.js';

export interface L7Handoff {
  handleConnection(socket: net.Socket, target: L7Target, firstBytes?: Buffer): void;
}

/** Hooks of listeners that speak a handshake first (CONNECT, SOCKS5): they answer the client once the outcome is known. */
export interface ProxyHooks {
  /** Upstream connected (or L7 takes over): write the success reply; returned bytes go upstream first. */
  onReady?(): Buffer | undefined;
  /** Routing or connecting failed: write an error reply; the socket is ended afterwards. */
  onFailure?(error: WeftError): void;
}

export interface ProxyRequest {
  client: net.Socket;
  destination: Destination;
  direction: Direction;
  /** The listener that accepted it, for the access log (outbound, inbound, explicit, local-port). */
  listener: string;
  source: SocketAddr;
  originalDst: SocketAddr;
  /** Bytes already read from the client that belong upstream (e.g. the request of absolute-form HTTP). */
  firstBytes?: Buffer;
  hooks?: ProxyHooks;
}

export interface ConnectionProxyDeps {
  state: ProxyState;
  picker: EndpointPicker;
  telemetry: TcpTelemetry;
  drain: Drain;
  limits: () => LimitsConfig;
  isOwnListener: (addr: SocketAddr) => boolean;
  l7: () => L7Handoff | undefined;
  logger: Logger;
  /** Outbound mTLS: the HBONE route for destinations with protocol HBONE (runtime/hbone). */
  hbone?: { plan(route: Route, source: SocketAddr, egress?: Egress): HbonePlan | undefined };
  /** In-pod capture: the pod (by one of its IPs) whose namespace upstream sockets are created in. */
  egressFor?: (ip: string) => Egress | undefined;
  /** L4 authorization by the destination's policy of connections this node delivers itself (inbound, same-node, local clients). */
  authorizeInbound?: (conn: ConnectionAttributes, opts?: { policiesAtL7?: boolean }) => AuthzDecision;
  /** Registers an established connection authorized here for policy re-checks; `close` ends it as 'policy'. */
  trackInbound?: (conn: ConnectionAttributes, close: () => void) => () => void;
}

/** Envoy response flags for L4 failures: UF upstream connect failure, UH no healthy upstream, UO overflow, NR no route. */
const FLAG_BY_CODE: Partial<Record<WeftError['code'], string>> = {
  WEFT_ERR_UPSTREAM_CONNECT: 'UF',
  WEFT_ERR_UPSTREAM_TIMEOUT: 'UF',
  WEFT_ERR_NO_HEALTHY_UPSTREAM: 'UH',
  WEFT_ERR_CONNECTION_LIMIT: 'UO',
  WEFT_ERR_UNKNOWN_SERVICE: 'NR',
  WEFT_ERR_SELF_CALL: 'NR',
  WEFT_ERR_POLICY_DENIED: 'DENY',
  WEFT_ERR_TLS: 'TLS_FAILURE',
};

export class ConnectionProxy {
  readonly #deps: ConnectionProxyDeps;
  #active = 0;
  /** The HBONE plan a request took, for its labels and access-log line. */
  readonly #plans = new WeakMap<ProxyRequest, HbonePlan>();

  constructor(deps: ConnectionProxyDeps) {
    this.#deps = deps;
  }

  get activeConnections(): number {
    return this.#active;
  }

  async handle(req: ProxyRequest): Promise<void> {
    const { deps } = { deps: this.#deps };
    const limits = deps.limits();
    const started = Date.now();
    const snapshot = deps.state.current;
    const sourceWorkload = snapshot.workloadByIp(req.source.address);
    const abort = new AbortController();
    const onClientGone = (): void => abort.abort();
    req.client.once('close', onClientGone);
    req.client.on('error', noop); // errors before the copy starts surface as 'close'; the copy installs its own handler
    this.#active++;
    const release = deps.drain.track({ destroy: () => abort.abort('drained') });

    let route: Route | undefined;
    let labels: TcpLabels | undefined;
    let untrack: (() => void) | undefined;
    /** The local destination's policy was checked with these attributes (re-checked on policy changes while open). */
    let authorized: ConnectionAttributes | undefined;
    /** In-pod same-node delivery: the destination pod's namespace, entered from the client's own address. */
    let sameNodeEgress: Egress | undefined;
    try {
      if (this.#active > limits.maxConnections) {
        throw new WeftError('WEFT_ERR_CONNECTION_LIMIT', `connection limit of ${limits.maxConnections} reached; refusing ${formatAddr(req.source)}`);
      }
      const tried = new Set<Workload>();
      let upstream: net.Socket | undefined;
      for (let attempt = 0; upstream === undefined; attempt++) {
        route = routeFor(req.destination, { snapshot, picker: deps.picker, isOwnListener: deps.isOwnListener, exclude: tried });
        if (route.kind === 'refused') throw new WeftError(route.code, route.message);
        if (req.direction === 'inbound' && (route.kind !== 'workload' || !route.workload.local)) {
          // 15006 only delivers to workloads on this node (ztunnel's inbound passthrough rule).
          throw new WeftError('WEFT_ERR_UNKNOWN_SERVICE', `inbound connection to ${formatAddr(req.originalDst)}, which is not a workload on this node`);
        }
        // In-pod: outbound leaves from the client pod's namespace; inbound enters the destination pod's from the client's address.
        const egress = req.listener === 'outbound' ? deps.egressFor?.(req.source.address) : req.listener === 'inbound' ? deps.egressFor?.(req.originalDst.address) : undefined;
        const plan = req.direction === 'outbound' ? deps.hbone?.plan(route, req.source, egress) : undefined;
        if (plan !== undefined) this.#plans.set(req, plan);
        authorized = this.#localDestination(req, route, plan, sourceWorkload);
        // Handed to L7, the destination's policies are evaluated per request by the L7 authorization filter.
        const atL7 = route.l7 && plan?.waypoint === undefined && deps.l7() !== undefined;
        if (authorized !== undefined && deps.authorizeInbound !== undefined) {
          const decision = deps.authorizeInbound(authorized, { policiesAtL7: atL7 });
          if (!decision.allowed) throw new WeftError('WEFT_ERR_POLICY_DENIED', `policy denied: ${decision.reason}`);
        }
        labels = this.#labels(req, sourceWorkload, route);
        if (atL7 && route.kind !== 'passthrough' && this.#handOffToL7(req, route, authorized?.sourceIdentity)) return;
        sameNodeEgress = plan === undefined && egress !== undefined && req.direction === 'outbound' ? this.#sameNodeEgress(route) : undefined;
        // Only captured connections carry a pod's address worth preserving (explicit and local ports come from loopback).
        const preserve = (snapshot.config.preserveSourceIp && (req.listener === 'outbound' || req.listener === 'inbound')) || (egress !== undefined && req.direction === 'inbound') || sameNodeEgress !== undefined;
        const from = sameNodeEgress ?? egress;
        try {
          upstream =
            plan === undefined
              ? await connectUpstream(route.upstream, { timeoutMs: limits.connectTimeoutMs, signal: abort.signal, ...(preserve ? { source: req.source.address } : {}), ...(from === undefined ? {} : { egress: from }) })
              : // The CONNECT stream is a Duplex with socket-style byte counters, all the copy uses.
                ((await plan.connect(abort.signal, limits.connectTimeoutMs)) as unknown as net.Socket);
          if (route.kind === 'service') deps.picker.reportSuccess(route.endpoint);
        } catch (err) {
          // A policy deny at the destination says nothing about the endpoint's health: no ejection, no retry.
          if (route.kind !== 'service' || abort.signal.aborted || isCausedBy(err, 'WEFT_ERR_POLICY_DENIED')) throw err;
          deps.picker.reportFailure(route.endpoint);
          tried.add(route.endpoint);
          // One retry on another endpoint, as Envoy's tcp_proxy max_connect_attempts would with 2.
          if (attempt >= 1 || tried.size >= route.service.endpoints.length) throw err;
        }
      }
      const first = req.hooks?.onReady?.();
      if (first !== undefined && first.length > 0) upstream.write(first);
      if (req.firstBytes !== undefined && req.firstBytes.length > 0) upstream.write(req.firstBytes);
      req.client.off('error', noop);
      req.client.off('close', onClientGone);
      deps.telemetry.opened(labels as TcpLabels);
      if (authorized !== undefined) untrack = deps.trackInbound?.(authorized, () => abort.abort('policy'));
      const result = await copyBidirectional(req.client, upstream, { idleTimeoutMs: limits.idleTimeoutMs, signal: abort.signal });
      deps.telemetry.closed(labels as TcpLabels, result.bytesSent, result.bytesReceived);
      this.#log(req, route, started, result);
    } catch (err) {
      const error = weftErrorOf(err) ?? new WeftError('WEFT_ERR_INTERNAL', `unexpected failure proxying ${formatAddr(req.source)}`, { cause: err });
      const flag = FLAG_BY_CODE[error.code] ?? 'DC';
      const failLabels = { ...(labels ?? this.#labels(req, sourceWorkload, route)), response_flags: flag };
      deps.telemetry.failed(failLabels);
      this.#log(req, route, started, undefined, error, flag);
      if (req.hooks?.onFailure !== undefined && !req.client.destroyed) {
        req.hooks.onFailure(error);
        req.client.end();
      } else req.client.resetAndDestroy();
    } finally {
      untrack?.();
      this.#active--;
      release();
      req.client.off('close', onClientGone);
    }
  }

  /**
   * In-pod same-node fast path (ztunnel's): a plain-TCP destination pod captured on this node too is entered straight
   * from the client's address (after the destination's authorization, #localDestination), instead of a second trip
   * through its 15006 listener.
   */
  #sameNodeEgress(route: Route): Egress | undefined {
    const destination = route.kind === 'service' ? route.endpoint : route.kind === 'workload' ? route.workload : undefined;
    if (destination?.local !== true || route.kind === 'refused' || route.kind === 'passthrough') return undefined;
    return this.#deps.egressFor?.(route.upstream.address);
  }

  /**
   * The attributes the destination's L4 policy is checked with when this node delivers the connection itself: inbound
   * (15006), and outbound to a workload on this node that no HBONE tunnel reaches (same-node capture, the explicit
   * proxy, localPorts) — ztunnel applies the destination's policy to same-node traffic too. Undefined when another hop
   * checks it (the HBONE server of the destination's node or a waypoint) or the destination is outside the mesh.
   * The source identity is what this path knows: the pod's own on the capture listener, none for local clients.
   */
  #localDestination(req: ProxyRequest, route: Exclude<Route, { kind: 'refused' }>, plan: HbonePlan | undefined, source: Workload | undefined): ConnectionAttributes | undefined {
    const destination = route.kind === 'workload' ? route.workload : route.kind === 'service' ? route.endpoint : undefined;
    if (destination === undefined || !destination.local || plan !== undefined) return undefined;
    const sourceIdentity = req.direction === 'outbound' && req.listener === 'outbound' && source?.local === true ? source.identity : undefined;
    return { ...(sourceIdentity === undefined ? {} : { sourceIdentity }), sourceIp: req.source.address, destination, destinationIp: route.upstream.address, destinationPort: route.upstream.port };
  }

  #handOffToL7(req: ProxyRequest, route: Exclude<Route, { kind: 'refused' | 'passthrough' }>, sourceIdentity: string | undefined): boolean {
    const l7 = this.#deps.l7();
    if (l7 === undefined) return false;
    const source = req.direction === 'outbound' ? this.#deps.state.current.workloadByIp(req.source.address) : undefined;
    const upstreamIdentity = source?.local === true ? source.identity : undefined;
    const first = req.hooks?.onReady?.();
    const bytes = first === undefined ? req.firstBytes : req.firstBytes === undefined ? first : Buffer.concat([first, req.firstBytes]);
    req.client.off('error', noop);
    l7.handleConnection(
      req.client,
      {
        ...(route.kind === 'service' ? { service: route.service, servicePort: route.servicePort, workload: route.endpoint } : { workload: route.workload }),
        originalDst: req.originalDst,
        source: req.source,
        // What L7 authorization matches `principals` against: the client pod's identity when it was captured.
        ...(sourceIdentity === undefined ? {} : { sourceIdentity }),
        // L7 here acts for the client pod: its upstream tunnels carry the pod's identity, as ztunnel's would.
        ...(upstreamIdentity === undefined ? {} : { upstreamIdentity }),
      },
      bytes,
    );
    // Listeners accept sockets paused (for the L4 fast path); the L7 path reads with 'data' events, so start the flow.
    if (req.client.readableFlowing === false && !req.client.destroyed) req.client.resume();
    return true;
  }

  #labels(req: ProxyRequest, source: Workload | undefined, route: Route | undefined): TcpLabels {
    const service = route?.kind === 'service' ? route.service : req.destination.kind === 'service' ? req.destination.service : undefined;
    const destination = route?.kind === 'service' ? route.endpoint : route?.kind === 'workload' ? route.workload : undefined;
    const plan = this.#plans.get(req);
    return tcpLabels({
      reporter: req.direction === 'outbound' ? 'source' : 'destination',
      ...(plan === undefined ? {} : { sourcePrincipal: plan.sourcePrincipal, destinationPrincipal: plan.destinationPrincipal, securityPolicy: 'mutual_tls' as const }),
      ...(source === undefined ? {} : { source }),
      ...(service === undefined ? {} : { service }),
      ...(destination === undefined ? {} : { destination }),
    });
  }

  #log(req: ProxyRequest, route: Route | undefined, started: number, result?: CopyResult, error?: WeftError, flag?: string): void {
    const snapshot = this.#deps.state.current;
    const src = snapshot.workloadByIp(req.source.address);
    const service = route?.kind === 'service' ? route.service : req.destination.kind === 'service' ? req.destination.service : undefined;
    const dst = route?.kind === 'service' ? route.endpoint : route?.kind === 'workload' ? route.workload : undefined;
    this.#deps.telemetry.accessLog.write({
      start_time: new Date(started).toISOString(),
      kind: 'tcp',
      direction: req.direction,
      listener: req.listener,
      source_address: formatAddr(req.source),
      source_workload: src?.name,
      source_namespace: src?.namespace,
      source_principal: this.#plans.get(req)?.sourceIdentity,
      destination_principal: this.#plans.get(req)?.destinationIdentity,
      connection_security_policy: this.#plans.has(req) ? 'mutual_tls' : 'unknown',
      downstream_local_address: formatAddr(req.originalDst),
      upstream_host: route !== undefined && route.kind !== 'refused' ? formatAddr(route.upstream) : undefined,
      destination_service: service?.hostname,
      destination_workload: dst?.name,
      destination_namespace: dst?.namespace,
      route: route?.kind,
      bytes_sent: result?.bytesSent ?? 0,
      bytes_received: result?.bytesReceived ?? 0,
      duration_ms: Date.now() - started,
      close_reason: result?.reason ?? 'failed',
      response_flags: flag ?? '-',
      error: error === undefined ? (result?.error === undefined ? undefined : String(result.error.message)) : `${error.code}: ${error.message}`,
    });
    if (error !== undefined) this.#deps.logger.warn({ listener: req.listener, src: formatAddr(req.source), dst: formatAddr(req.originalDst), code: error.code, error: error.message }, 'connection failed');
  }
}


function noop(): void {}
