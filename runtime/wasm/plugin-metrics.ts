/**
 * Plugin-defined metrics (proxy_define_metric and friends) kept as exact 64-bit values and mirrored into the node's
 * Prometheus registry under the plugin's own (sanitized) name, so they render on /stats/prometheus.
 *
 * The request path does no BigInt work and no prom-client work: a value is a plain number while it is a safe integer
 * (a counter below 2^53, which a plugin counting a million requests a second reaches after 285 years) and a BigInt
 * only beyond, and counters and gauges are copied into prom-client when the registry is scraped. Histograms are
 * observed as they are recorded: a scrape cannot rebuild their buckets.
 */
import type { Counter, Gauge, Histogram } from 'prom-client';
import { metricClasses, type MetricsRegistry } from '../telemetry/metrics-registry.js';
import { MetricType, Status, type StatusCode } from './abi-constants.js';

type Kind = (typeof MetricType)[keyof typeof MetricType];

interface Metric {
  kind: Kind;
  name: string;
  /** The value while it is a safe integer; `big` holds it instead once it is not. */
  value: number;
  big: bigint | undefined;
  prom: Counter | Gauge | Histogram;
  /** Incremented in prom-client as it changes: a host metric of the same name and kind, whose collect is its own. */
  eager: boolean;
}

const TWO_32 = 4294967296;

/** The i64 whose low and high 32-bit words are `low` and `high` (either signedness), as a number when exact. */
export function i64FromWords(low: number, high: number): number | bigint {
  high |= 0;
  // |high| < 2^21: high * 2^32 + low is below 2^53 in magnitude, so exact.
  if (high < 0x200000 && high >= -0x200000) return high * TWO_32 + (low >>> 0);
  return (BigInt(high) << 32n) | BigInt(low >>> 0);
}

/** The low and high 32-bit words of `value` taken as an i64 (its low 64 bits). */
export function i64Words(value: bigint): [low: number, high: number] {
  return [Number(BigInt.asIntN(32, value)), Number(BigInt.asIntN(32, value >> 32n))];
}

/**
 * prom-client metrics a scrape fills from the plugin metrics behind them: their sum, when several hosts on one registry
 * (tests, embedders) define the same name.
 */
const mirrored = new WeakMap<Counter | Gauge, Metric[]>();

function mirror(metric: Metric, prom: Counter | Gauge): void {
  let sources = mirrored.get(prom);
  if (sources === undefined) {
    const list: Metric[] = (sources = []);
    mirrored.set(prom, list);
    Object.assign(prom, {
      collect(this: Counter | Gauge) {
        let total = 0;
        for (const m of list) total += Number(m.big ?? m.value);
        this.reset();
        if (this instanceof metricClasses.Counter) this.inc(total);
        else this.set(total);
      },
    });
  }
  sources.push(metric);
}

/** `value` as a number when it is a safe integer, else as a BigInt (for Metric.value / Metric.big). */
function store(m: Metric, value: number | bigint): void {
  if (typeof value === 'bigint' && value >= -9007199254740991n && value <= 9007199254740991n) value = Number(value);
  if (typeof value === 'number') {
    m.value = value;
    m.big = undefined;
  } else m.big = value;
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
    const held = this.#registry.registry.getSingleMetric(name);
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
    const eager = type === MetricType.Histogram || (held !== undefined && !mirrored.has(prom as Counter | Gauge));
    const metric: Metric = { kind: type, name, value: 0, big: undefined, prom, eager };
    if (!eager) mirror(metric, prom as Counter | Gauge);
    this.#byId.push(metric);
    const id = this.#byId.length;
    this.#byName.set(name, id);
    return id;
  }

  /** Adds the i64 `delta`, given as its low and high 32-bit words (i64-split-shim.ts): a counter refuses a negative one. */
  increment(id: number, low: number, high: number): StatusCode {
    const m = this.#byId[id - 1];
    if (m === undefined) return Status.NotFound;
    if (m.kind === MetricType.Histogram) return Status.BadArgument;
    const counter = m.kind === MetricType.Counter;
    if (counter && (high | 0) < 0) return Status.BadArgument;
    const delta = i64FromWords(low, high);
    const sum = typeof delta === 'number' && m.big === undefined ? m.value + delta : undefined;
    // Both safe integers: the sum is exact exactly when it is a safe integer too (a rounded one is at least 2^53).
    if (sum !== undefined && Number.isSafeInteger(sum)) m.value = sum;
    else {
      const total = (m.big ?? BigInt(m.value)) + BigInt(delta);
      store(m, counter ? BigInt.asUintN(64, total) : BigInt.asIntN(64, total));
    }
    if (m.eager) {
      if (counter) (m.prom as Counter).inc(Number(delta));
      else (m.prom as Gauge).set(Number(m.big ?? m.value));
    }
    return Status.Ok;
  }

  /** Sets a gauge, observes a histogram, adds to a counter: the i64 `value` given as its low and high 32-bit words. */
  record(id: number, low: number, high: number): StatusCode {
    const m = this.#byId[id - 1];
    if (m === undefined) return Status.NotFound;
    if (m.kind === MetricType.Counter) return this.increment(id, low, high);
    store(m, i64FromWords(low, high));
    const value = Number(m.big ?? m.value);
    if (m.kind === MetricType.Histogram) (m.prom as Histogram).observe(value);
    else if (m.eager) (m.prom as Gauge).set(value);
    return Status.Ok;
  }

  /** A counter's value as a u64, a gauge's as an i64 (a number when it is a safe integer), or a status. */
  get(id: number): number | bigint | { status: StatusCode } {
    const m = this.#byId[id - 1];
    if (m === undefined) return { status: Status.NotFound };
    if (m.kind === MetricType.Histogram) return { status: Status.BadArgument };
    return m.big ?? m.value;
  }
}
