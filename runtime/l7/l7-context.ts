/** What every L7 connection shares within one proxy: state, limits, clusters, telemetry and the filter resolver; also the per-connection target the L4 path hands over. */
import type { L7LimitsConfig } from '../config/l7-config-schema.js';
import type { Logger } from '../log.js';
import type { ProxyState } from '../state/proxy-state.js';
import type { Service, ServiceTarget, StateSnapshot, Workload } from '../state/state-snapshot.js';
import type { ClusterRegistry } from './cluster-registry.js';
import type { HttpAccessLog } from './http-access-log.js';
import type { HttpTelemetry } from './http-telemetry.js';
import type { L7Filter } from './l7-filter.js';
import type { RequestMirror } from './request-mirror.js';
import type { ConnectFn } from './http1-pool.js';

export interface SocketAddress {
  address: string;
  port: number;
}

/** Where an accepted connection is going, as resolved by the L4 path. */
export interface L7Target {
  service?: Service;
  servicePort?: ServiceTarget['port'];
  workload?: Workload;
  originalDst: SocketAddress;
  source: SocketAddress;
  /** SPIFFE id of the peer when it came over mTLS/HBONE. */
  sourceIdentity?: string;
  /**
   * The local workload upstream connections are opened for: the client pod when L7 runs at the source (no waypoint),
   * the waypoint when the connection reached this node through it. An HBONE destination is reached over HBONE with
   * this workload's certificate; unset, upstream connections are plain TCP. Pools are never shared across identities.
   */
  upstreamIdentity?: string;
}

export interface L7Context {
  readonly state: ProxyState;
  readonly limits: L7LimitsConfig;
  readonly clusters: ClusterRegistry;
  readonly telemetry: HttpTelemetry;
  readonly accessLog: HttpAccessLog;
  readonly logger: Logger;
  /** The filters for a destination in chain order (authorization, plugins by phase and priority, native extras). */
  filtersFor(snapshot: StateSnapshot, target: L7Target): readonly L7Filter[];
  readonly mirror: RequestMirror;
  /** Raw upstream connections (CONNECT tunnels). */
  readonly connect: ConnectFn;
  /** Live downstream connections, for drain and leak checks. */
  readonly connections: Set<{ destroy(): void; isIdleSince?(cutoff: number): boolean; drain?(): void }>;
  /** Set by the drain: connections and sessions that start from now on drain from their start. */
  draining: boolean;
}
