/**
 * Plugin-defined metrics (proxy_define_metric and friends) kept as exact 64-bit BigInt values and mirrored into the
 * node's Prometheus registry under the plugin's own (sanitized) name, so they render on /stats/prometheus.
 */
import type { Counter, Gauge, Histogram } from 'prom-client';
import { metricClasses, type MetricsRegistry } from '../telemetry/metrics-registry.js';
import { MetricType, Status, type StatusCode } from './abi-constants.js';

type Kind = (typeof MetricType)[keyof typeof MetricType];

interface Metric {
  kind: Kind;
  name: string;
  value: bigint;
  prom: Counter | Gauge | Histogram;
}

/** Prometheus names allow [a-zA-Z_:][a-zA-Z0-9_:]*; Envoy-style names (`a.b;tag=v`) are folded to underscores. */
export function sanitizeMetricName(raw: string): string {
  let name = raw.replace(/[^a-zA-Z0-9_:]/g, '_');
  if (name === '' || /^[0-9]/.test(name)) name = `_${name}`;
  return name;
}

export class PluginMetrics {
  readonly #registry: MetricsRegistry;
  readonly #byId: Metric[] = [];
  readonly #byName = new Map<string, number>();

  constructor(registry: MetricsRegistry) {
    this.#registry = registry;
  }

  /** A metric id (>= 1) or a status: BAD_ARGUMENT for an unknown type or a name already used by another kind of metric. */
  define(type: number, rawName: string): number | { status: StatusCode } {
    if (type !== MetricType.Counter && type !== MetricType.Gauge && type !== MetricType.Histogram) return { status: Status.BadArgument };
    const name = sanitizeMetricName(rawName);
    const existing = this.#byName.get(name);
    if (existing !== undefined) return this.#byId[existing - 1]!.kind === type ? existing : { status: Status.BadArgument };
    const help = `proxy-wasm plugin metric ${rawName}`;
    let prom: Counter | Gauge | Histogram;
    try {
      if (type === MetricType.Counter) prom = this.#registry.counter(name, help);
      else if (type === MetricType.Gauge) prom = this.#registry.gauge(name, help);
      else prom = this.#registry.histogram(name, help);
    } catch {
      return { status: Status.BadArgument };
    }
    // getSingleMetric may hand back a host metric of another kind under the same name: refuse rather than corrupt it.
    const expected = type === MetricType.Counter ? metricClasses.Counter : type === MetricType.Gauge ? metricClasses.Gauge : metricClasses.Histogram;
    if (!(prom instanceof expected)) return { status: Status.BadArgument };
    this.#byId.push({ kind: type, name, value: 0n, prom });
    const id = this.#byId.length;
    this.#byName.set(name, id);
    return id;
  }

  increment(id: number, delta: bigint): StatusCode {
    const m = this.#byId[id - 1];
    if (m === undefined) return Status.NotFound;
    if (m.kind === MetricType.Counter) {
      if (delta < 0n) return Status.BadArgument;
      m.value = BigInt.asUintN(64, m.value + delta);
      (m.prom as Counter).inc(Number(delta));
      return Status.Ok;
    }
    if (m.kind === MetricType.Gauge) {
      m.value = BigInt.asIntN(64, m.value + delta);
      (m.prom as Gauge).set(Number(m.value));
      return Status.Ok;
    }
    return Status.BadArgument;
  }

  record(id: number, value: bigint): StatusCode {
    const m = this.#byId[id - 1];
    if (m === undefined) return Status.NotFound;
    if (m.kind === MetricType.Counter) return this.increment(id, value);
    if (m.kind === MetricType.Gauge) {
      m.value = BigInt.asIntN(64, value);
      (m.prom as Gauge).set(Number(m.value));
    } else {
      m.value = value;
      (m.prom as Histogram).observe(Number(value));
    }
    return Status.Ok;
  }

  get(id: number): bigint | { status: StatusCode } {
    const m = this.#byId[id - 1];
    if (m === undefined) return { status: Status.NotFound };
    if (m.kind === MetricType.Histogram) return { status: Status.BadArgument };
    return m.value;
  }
}
