/** The one Prometheus registry of a weft instance (prom-client); every subsystem registers its metrics here and /stats/prometheus renders it. */
import { createRequire } from 'node:module';
import type * as PromClient from 'prom-client';
import type { Counter, Gauge, Histogram, Registry } from 'prom-client';

// prom-client's index also loads the cluster aggregator (child_process, cluster), the Pushgateway (http, https),
// default process metrics and @opentelemetry/api: about 10 MB of an idle node's RSS for nothing weft uses. The four
// classes weft needs are plain CommonJS files that the index re-exports, so they are the same classes either way.
const require = createRequire(import.meta.url);
const prom = {
  Registry: require('prom-client/lib/registry') as typeof PromClient.Registry,
  Counter: require('prom-client/lib/counter') as typeof PromClient.Counter,
  Gauge: require('prom-client/lib/gauge') as typeof PromClient.Gauge,
  Histogram: require('prom-client/lib/histogram') as typeof PromClient.Histogram,
};

/** The metric classes the registry makes (for `instanceof`): importing them from 'prom-client' would load its index. */
export const metricClasses = { Counter: prom.Counter, Gauge: prom.Gauge, Histogram: prom.Histogram } as const;

export class MetricsRegistry {
  readonly registry: Registry = new prom.Registry();

  counter<L extends string>(name: string, help: string, labelNames: readonly L[] = []): Counter<L> {
    return (this.registry.getSingleMetric(name) as Counter<L> | undefined) ?? new prom.Counter({ name, help, labelNames, registers: [this.registry] });
  }

  gauge<L extends string>(name: string, help: string, labelNames: readonly L[] = []): Gauge<L> {
    return (this.registry.getSingleMetric(name) as Gauge<L> | undefined) ?? new prom.Gauge({ name, help, labelNames, registers: [this.registry] });
  }

  histogram<L extends string>(name: string, help: string, labelNames: readonly L[] = [], buckets?: number[]): Histogram<L> {
    return (
      (this.registry.getSingleMetric(name) as Histogram<L> | undefined) ??
      new prom.Histogram({ name, help, labelNames, registers: [this.registry], ...(buckets === undefined ? {} : { buckets }) })
    );
  }

  remove(name: string): void {
    this.registry.removeSingleMetric(name);
  }

  render(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
