/** weft's own per-plugin metrics (weft_plugin_*): VM starts, failures by reason, evictions, load errors, live VMs and streams. */
import type { Counter, Gauge } from 'prom-client';
import type { MetricsRegistry } from '../telemetry/metrics-registry.js';

export class HostMetrics {
  readonly #vmStarts: Counter<'plugin'>;
  readonly #vmFailures: Counter<'plugin' | 'reason'>;
  readonly #streamFailures: Counter<'plugin' | 'reason' | 'fail_strategy'>;
  readonly #evictions: Counter<'plugin'>;
  readonly #loadErrors: Counter<'plugin'>;
  readonly #fetches: Counter<'plugin' | 'source'>;

  constructor(registry: MetricsRegistry, live: () => { plugin: string; vms: number; streams: number }[]) {
    this.#vmStarts = registry.counter('weft_plugin_vm_starts_total', 'Plugin VMs instantiated and started', ['plugin']);
    this.#vmFailures = registry.counter('weft_plugin_vm_failures_total', 'Plugin VMs that failed (trap, CPU budget, memory limit, proc_exit, start)', ['plugin', 'reason']);
    this.#streamFailures = registry.counter('weft_plugin_stream_failures_total', 'Requests on which a plugin failed, by the failStrategy applied', ['plugin', 'reason', 'fail_strategy']);
    this.#evictions = registry.counter('weft_plugin_vm_evictions_total', 'Idle plugin VMs closed', ['plugin']);
    this.#loadErrors = registry.counter('weft_plugin_load_errors_total', 'Plugin loads refused (fetch, checksum, compile, validation, start)', ['plugin']);
    this.#fetches = registry.counter('weft_plugin_fetches_total', 'Plugin module fetches by where the bytes came from', ['plugin', 'source']);
    // Gauges read live state at scrape time so the request path never touches them.
    const vms = registry.gauge('weft_plugin_vms', 'Plugin VMs alive (current plus draining)', ['plugin']);
    const streams = registry.counter('weft_plugin_streams_total', 'Streams that ran through the plugin', ['plugin']);
    Object.assign(vms, {
      collect(this: Gauge<'plugin'>) {
        this.reset();
        for (const l of live()) this.set({ plugin: l.plugin }, l.vms);
      },
    });
    Object.assign(streams, {
      collect(this: Counter<'plugin'>) {
        this.reset();
        for (const l of live()) if (l.streams > 0) this.inc({ plugin: l.plugin }, l.streams);
      },
    });
  }

  vmStarted(plugin: string): void {
    this.#vmStarts.inc({ plugin });
  }

  vmFailed(plugin: string, reason: string): void {
    this.#vmFailures.inc({ plugin, reason });
  }

  streamFailed(plugin: string, reason: string, failStrategy: string): void {
    this.#streamFailures.inc({ plugin, reason, fail_strategy: failStrategy });
  }

  vmEvicted(plugin: string): void {
    this.#evictions.inc({ plugin });
  }

  loadFailed(plugin: string): void {
    this.#loadErrors.inc({ plugin });
  }

  fetched(plugin: string, source: 'network' | 'cache' | 'file'): void {
    this.#fetches.inc({ plugin, source });
  }
}
