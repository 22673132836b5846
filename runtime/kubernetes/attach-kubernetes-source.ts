/** Connects a running App to the cluster: the source's readiness gate (first full sync), its /config_dump section, and its reflectors started. */
import type { MetricsRegistry } from '../telemetry/metrics-registry.js';
import type { WeftConfig } from '../config/config-schema.js';
import { loadKubeConnection, type KubeConnection } from './kube-config.js';
import type { ReflectorTuning } from './kube-reflector.js';
import { KubernetesSource, type KubernetesSourceTarget } from './kubernetes-source.js';

/** What the source needs of the runtime: an App with one event loop, or the primary of several workers. */
export interface KubernetesSourceHost extends KubernetesSourceTarget {
  readonly metrics: MetricsRegistry;
  addReadinessGate(gate: () => boolean): void;
  addDumpSection(name: string, section: () => unknown): void;
}

export interface AttachOptions {
  /** Defaults to KUBECONFIG, else the in-cluster service account. */
  connection?: KubeConnection;
  tuning?: Partial<ReflectorTuning>;
  coalesceMs?: number;
  recordEvents?: boolean;
  /** Where the watched resources are announced (`weft run` prints them). */
  print?: (line: string) => void;
}

export function attachKubernetesSource(app: KubernetesSourceHost, config: WeftConfig, opts: AttachOptions = {}): KubernetesSource {
  const connection = opts.connection ?? loadKubeConnection();
  const source = new KubernetesSource({
    base: config,
    connection,
    target: app,
    metrics: app.metrics,
    ...(opts.tuning === undefined ? {} : { tuning: opts.tuning }),
    ...(opts.coalesceMs === undefined ? {} : { coalesceMs: opts.coalesceMs }),
    ...(opts.recordEvents === undefined ? {} : { recordEvents: opts.recordEvents }),
  });
  // Not ready until every resource was listed once; afterwards an unreachable API server leaves readiness (and the last snapshot) alone.
  app.addReadinessGate(() => source.synced);
  app.addDumpSection('kubernetes', () => source.dump());
  for (const line of source.describe(connection.origin)) opts.print?.(line);
  source.start();
  return source;
}
