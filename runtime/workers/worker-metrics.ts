/**
 * One /stats/prometheus for a process of several worker threads: prom-client's AggregatorRegistry.aggregate sums each
 * metric over the workers (counters, histogram buckets/sum/count, and count-like gauges such as open connections and
 * live VMs, which is what a per-process scrape means); metrics the primary owns (build info, reloads, worker
 * lifecycle) come from the primary alone instead of once per worker.
 */
import { createRequire } from 'node:module';
import type * as PromClient from 'prom-client';
import type { MetricObjectWithValues, MetricValue } from 'prom-client';

type MetricsJson = MetricObjectWithValues<MetricValue<string>>[];

// The aggregator alone, not prom-client's index (see telemetry/metrics-registry.ts for why).
const require = createRequire(import.meta.url);
const AggregatorRegistry = require('prom-client/lib/cluster') as typeof PromClient.AggregatorRegistry;

/** Renders the process's metrics from each worker's `getMetricsAsJSON()` and the primary's own. */
export async function renderAggregated(workers: readonly MetricsJson[], primary: MetricsJson): Promise<{ text: string; contentType: string }> {
  const own = new Set(primary.map((m) => m.name));
  const fromWorkers = workers.map((list) => list.filter((m) => !own.has(m.name)));
  const registry = AggregatorRegistry.aggregate([...fromWorkers, primary] as never);
  return { text: await registry.metrics(), contentType: registry.contentType };
}
