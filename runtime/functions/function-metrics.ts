/** The weft_fn_* metrics (../shared/reference/serverless-wasm.md §5.16), registered once per registry. */
import type { Counter, Gauge, Histogram } from 'prom-client';
import type { MetricsRegistry } from '../telemetry/metrics-registry.js';

export interface FunctionMetrics {
  requests: Counter<'fn' | 'code'>;
  duration: Histogram<'fn'>;
  coldStarts: Counter<'fn' | 'kind'>;
  coldStartDuration: Histogram<'fn' | 'kind'>;
  instances: Gauge<'fn'>;
  queueDepth: Gauge<'fn'>;
  instanceMemory: Gauge<'fn'>;
  evictions: Counter<'fn' | 'reason'>;
  modulesLoaded: Gauge<'fn'>;
  rejected: Counter<'fn' | 'reason'>;
  outbound: Counter<'fn' | 'result'>;
}

const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export function functionMetrics(registry: MetricsRegistry): FunctionMetrics {
  return {
    requests: registry.counter('weft_fn_requests_total', 'Requests served by functions, by status code', ['fn', 'code']),
    duration: registry.histogram('weft_fn_request_duration_seconds', 'Function request duration, dispatch to end of response', ['fn'], LATENCY_BUCKETS),
    coldStarts: registry.counter('weft_fn_cold_starts_total', 'Instances started for a request: cold (module compiled first) or warm_cold (module in memory)', ['fn', 'kind']),
    coldStartDuration: registry.histogram('weft_fn_cold_start_duration_seconds', 'Time from needing an instance to it being ready', ['fn', 'kind'], LATENCY_BUCKETS),
    instances: registry.gauge('weft_fn_instances', 'Live function instances (worker threads)', ['fn']),
    queueDepth: registry.gauge('weft_fn_queue_depth', 'Requests waiting for a function instance', ['fn']),
    instanceMemory: registry.gauge('weft_fn_instance_memory_bytes', 'Linear memory of the live instances of a function, summed', ['fn']),
    evictions: registry.counter('weft_fn_evictions_total', 'Instances discarded, by reason (idle, recycled, trap, memory, cpu, timeout, exit)', ['fn', 'reason']),
    modulesLoaded: registry.gauge('weft_fn_modules_loaded', 'Compiled function modules held in memory', ['fn']),
    rejected: registry.counter('weft_fn_rejected_total', 'Requests answered 503 for lack of capacity (overloaded, queue_timeout)', ['fn', 'reason']),
    outbound: registry.counter('weft_fn_outbound_requests_total', 'Outbound wasi:http requests by result (allowed, denied)', ['fn', 'result']),
  };
}
