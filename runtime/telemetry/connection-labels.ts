/** Istio's CommonTrafficLabels (the peer part shared by TCP and HTTP metrics, and the TCP set), computed once per connection; missing values render as "unknown". */
import type { Service, Workload } from '../state/state-snapshot.js';

/** Who talked to whom: the labels istio_tcp_* and istio_requests_* share. */
export const PEER_LABEL_NAMES = [
  'reporter',
  'source_workload',
  'source_workload_namespace',
  'source_canonical_service',
  'source_principal',
  'source_app',
  'destination_service',
  'destination_service_namespace',
  'destination_service_name',
  'destination_workload',
  'destination_workload_namespace',
  'destination_canonical_service',
  'destination_principal',
  'destination_app',
] as const;

export const TCP_LABEL_NAMES = [...PEER_LABEL_NAMES, 'request_protocol', 'response_flags', 'connection_security_policy'] as const;

export type PeerLabelName = (typeof PEER_LABEL_NAMES)[number];
export type TcpLabelName = (typeof TCP_LABEL_NAMES)[number];
export type TcpLabels = Record<TcpLabelName, string>;

const UNKNOWN = 'unknown';

function canonicalService(w: Workload | undefined): string {
  return w?.labels['service.istio.io/canonical-name'] ?? w?.labels.app ?? w?.name ?? UNKNOWN;
}

export interface PeerInputs {
  reporter: 'source' | 'destination' | 'waypoint';
  source?: Workload;
  sourcePrincipal?: string;
  service?: Service;
  destination?: Workload;
  destinationPrincipal?: string;
}

export function peerLabelValues(i: PeerInputs): Record<PeerLabelName, string> {
  return {
    reporter: i.reporter,
    source_workload: i.source?.name ?? UNKNOWN,
    source_workload_namespace: i.source?.namespace ?? UNKNOWN,
    source_canonical_service: canonicalService(i.source),
    source_principal: i.sourcePrincipal ?? UNKNOWN,
    source_app: i.source?.labels.app ?? UNKNOWN,
    destination_service: i.service?.hostname ?? UNKNOWN,
    destination_service_namespace: i.service?.namespace ?? UNKNOWN,
    destination_service_name: i.service?.name ?? UNKNOWN,
    destination_workload: i.destination?.name ?? UNKNOWN,
    destination_workload_namespace: i.destination?.namespace ?? UNKNOWN,
    destination_canonical_service: canonicalService(i.destination),
    destination_principal: i.destinationPrincipal ?? UNKNOWN,
    destination_app: i.destination?.labels.app ?? UNKNOWN,
  };
}

export interface LabelInputs extends PeerInputs {
  reporter: 'source' | 'destination';
  /** Envoy/ztunnel flag for failed connections ("-" when none). */
  responseFlags?: string;
  securityPolicy?: 'mutual_tls' | 'unknown';
}

export function tcpLabels(i: LabelInputs): TcpLabels {
  return {
    ...peerLabelValues(i),
    request_protocol: 'tcp',
    response_flags: i.responseFlags ?? '-',
    connection_security_policy: i.securityPolicy ?? UNKNOWN,
  };
}
