// Plugin metrics (counters, gauges, histograms) defined once, usually in onConfigure, and exported by the host
// (weft: on /stats/prometheus under the metric's sanitized name).
import { MetricType, WasmResult } from "./abi-enums";
import { proxy_define_metric, proxy_get_metric, proxy_increment_metric, proxy_record_metric } from "./imports";
import { outWord, utf8 } from "./memory";
import { U64Result } from "./result";

/**
 * A defined metric; `status` tells whether the host accepted the definition (the other calls then answer NotFound).
 *
 * @example
 *   const denied = defineCounter("authz_denied_total");
 *   denied.increment(1);
 */
export class Metric {
  constructor(public readonly id: u32, public readonly type: MetricType, public readonly status: WasmResult) {}

  get ok(): bool {
    return this.status == WasmResult.Ok;
  }

  /** Adds `delta` (counters refuse negative deltas with BadArgument). */
  increment(delta: i64 = 1): WasmResult {
    return <WasmResult>proxy_increment_metric(this.id, delta);
  }

  /** Sets a gauge / records a histogram sample. */
  record(value: u64): WasmResult {
    return <WasmResult>proxy_record_metric(this.id, value);
  }

  /** The current value (not for histograms). */
  get(): U64Result {
    const st = <WasmResult>proxy_get_metric(this.id, outWord());
    return new U64Result(st, st == WasmResult.Ok ? load<u64>(outWord()) : 0);
  }
}

export function defineMetric(type: MetricType, name: string): Metric {
  const n = utf8(name);
  const st = <WasmResult>proxy_define_metric(type, changetype<usize>(n), n.byteLength, outWord());
  return new Metric(st == WasmResult.Ok ? load<u32>(outWord()) : 0, type, st);
}

export function defineCounter(name: string): Metric { return defineMetric(MetricType.Counter, name); }
export function defineGauge(name: string): Metric { return defineMetric(MetricType.Gauge, name); }
export function defineHistogram(name: string): Metric { return defineMetric(MetricType.Histogram, name); }
