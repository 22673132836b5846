/** Istio's HTTP metrics (istio_requests_total, istio_request_duration_milliseconds, istio_request_bytes, istio_response_bytes) counted in plain arrays on the hot path and rendered through prom-client only when scraped. */
import type { MetricsRegistry } from '../telemetry/metrics-registry.js';
import type { Service, Workload } from '../state/state-snapshot.js';
import { PEER_LABEL_NAMES, peerLabelValues } from '../telemetry/connection-labels.js';

export const HTTP_LABEL_NAMES = [...PEER_LABEL_NAMES, 'request_protocol', 'response_code', 'grpc_response_status', 'response_flags', 'connection_security_policy'] as const;

/** Istio's default duration buckets (ms). */
const DURATION_BUCKETS = [0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000];
/** Istio's byte-size buckets: powers of ten up to 1 GB. */
const BYTE_BUCKETS = [1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000, 1000000000];

/** Labels fixed for one downstream connection and destination; computed once, reused by every request on it. */
export interface PeerLabels {
  /** Joined values: the fixed part of the series key. */
  readonly key: string;
  readonly values: Record<string, string>;
  /** Series already used by this peer, by `code|flags|grpc`: saves hashing the long key on every request. */
  readonly cache: Map<string, unknown>;
  /** The last series recorded, with its code, flags and gRPC status; most requests repeat it (compared without a key string). */
  lastCode: number;
  lastFlags: string;
  lastGrpc: string;
  last: unknown;
}

export function peerLabels(i: { source?: Workload; sourcePrincipal?: string; service?: Service; destination?: Workload; protocol: 'http' | 'grpc' }): PeerLabels {
  const values: Record<string, string> = {
    ...peerLabelValues({ reporter: 'waypoint', ...i, ...(i.destination?.identity === undefined ? {} : { destinationPrincipal: i.destination.identity }) }),
    // A workload addressed directly still has a namespace worth reporting.
    destination_service_namespace: i.service?.namespace ?? i.destination?.namespace ?? 'unknown',
    request_protocol: i.protocol,
    connection_security_policy: i.sourcePrincipal === undefined ? 'unknown' : 'mutual_tls',
  };
  return { key: Object.values(values).join('\u0001'), values, cache: new Map(), lastCode: -1, lastFlags: '', lastGrpc: '', last: undefined };
}

class Series {
  count = 0;
  readonly duration = new Float64Array(DURATION_BUCKETS.length + 1);
  durationSum = 0;
  readonly requestBytes = new Float64Array(BYTE_BUCKETS.length + 1);
  requestBytesSum = 0;
  readonly responseBytes = new Float64Array(BYTE_BUCKETS.length + 1);
  responseBytesSum = 0;
  constructor(readonly labels: Record<string, string>) {}
}

function bucketOf(buckets: readonly number[], v: number): number {
  let i = 0;
  while (i < buckets.length && v > buckets[i]!) i++;
  return i;
}

interface MetricValue {
  value: number;
  labels: Record<string, string | number>;
  metricName?: string;
}

/** One telemetry per registry: several L7 proxies on one registry (an app and a test, a restart) share the series. */
const byRegistry = new WeakMap<MetricsRegistry, HttpTelemetry>();

export class HttpTelemetry {
  readonly #series = new Map<string, Series>();

  static for(metrics: MetricsRegistry): HttpTelemetry {
    let t = byRegistry.get(metrics);
    if (t === undefined) byRegistry.set(metrics, (t = new HttpTelemetry(metrics)));
    return t;
  }

  private constructor(metrics: MetricsRegistry) {
    const reg = metrics.registry;
    const counterValues = (): MetricValue[] => this.#counterValues();
    reg.registerMetric({
      name: 'istio_requests_total',
      help: 'Requests handled by the waypoint, by Istio standard labels.',
      type: 'counter',
      aggregator: 'sum',
      get: () => ({ name: 'istio_requests_total', help: 'Requests handled by the waypoint, by Istio standard labels.', type: 'counter', aggregator: 'sum', values: counterValues() }),
    } as never);
    this.#registerHistogram(reg, 'istio_request_duration_milliseconds', 'Request duration in milliseconds.', DURATION_BUCKETS, (s) => [s.duration, s.durationSum]);
    this.#registerHistogram(reg, 'istio_request_bytes', 'Request size in bytes (head and body).', BYTE_BUCKETS, (s) => [s.requestBytes, s.requestBytesSum]);
    this.#registerHistogram(reg, 'istio_response_bytes', 'Response size in bytes (head and body).', BYTE_BUCKETS, (s) => [s.responseBytes, s.responseBytesSum]);
  }

  /** One finished request; `grpcStatus` is '-' unless the response carried grpc-status. */
  record(peer: PeerLabels, code: number, flags: string, grpcStatus: string, durationMs: number, requestBytes: number, responseBytes: number): void {
    let s: Series | undefined;
    if (peer.lastCode === code && peer.lastFlags === flags && peer.lastGrpc === grpcStatus) s = peer.last as Series;
    else {
      const shortKey = flags === '-' && grpcStatus === '-' ? String(code) : `${code}|${flags}|${grpcStatus}`;
      s = peer.cache.get(shortKey) as Series | undefined;
      if (s === undefined) {
        const key = `${peer.key}\u0001${code}\u0001${flags}\u0001${grpcStatus}`;
        s = this.#series.get(key);
        if (s === undefined) {
          s = new Series({ ...peer.values, response_code: String(code), response_flags: flags, grpc_response_status: grpcStatus === '-' ? '' : grpcStatus });
          this.#series.set(key, s);
        }
        peer.cache.set(shortKey, s);
      }
      peer.lastCode = code;
      peer.lastFlags = flags;
      peer.lastGrpc = grpcStatus;
      peer.last = s;
    }
    s.count++;
    s.duration[bucketOf(DURATION_BUCKETS, durationMs)]!++;
    s.durationSum += durationMs;
    s.requestBytes[bucketOf(BYTE_BUCKETS, requestBytes)]!++;
    s.requestBytesSum += requestBytes;
    s.responseBytes[bucketOf(BYTE_BUCKETS, responseBytes)]!++;
    s.responseBytesSum += responseBytes;
  }

  /** Test and admin helper: the requests counted for labels matching `filter`. */
  count(filter: Record<string, string>): number {
    let n = 0;
    for (const s of this.#series.values()) if (Object.entries(filter).every(([k, v]) => s.labels[k] === v)) n += s.count;
    return n;
  }

  #counterValues(): MetricValue[] {
    return [...this.#series.values()].map((s) => ({ value: s.count, labels: s.labels }));
  }

  #registerHistogram(reg: MetricsRegistry['registry'], name: string, help: string, buckets: number[], pick: (s: Series) => [Float64Array, number]): void {
    const collect = (): MetricValue[] => {
      const out: MetricValue[] = [];
      for (const s of this.#series.values()) {
        const [counts, sum] = pick(s);
        let cumulative = 0;
        for (let i = 0; i < buckets.length; i++) {
          cumulative += counts[i]!;
          out.push({ metricName: `${name}_bucket`, labels: { ...s.labels, le: buckets[i]! }, value: cumulative });
        }
        cumulative += counts[buckets.length]!;
        out.push({ metricName: `${name}_bucket`, labels: { ...s.labels, le: '+Inf' }, value: cumulative });
        out.push({ metricName: `${name}_sum`, labels: s.labels, value: sum });
        out.push({ metricName: `${name}_count`, labels: s.labels, value: cumulative });
      }
      return out;
    };
    reg.registerMetric({ name, help, type: 'histogram', aggregator: 'sum', get: () => ({ name, help, type: 'histogram', aggregator: 'sum', values: collect() }) } as never);
  }
}
