/** The Kubernetes source's health as Prometheus metrics (weft_k8s_*): requests, watch events, errors by reason, relists, connection and sync state, rejected objects. */
import type { Counter, Gauge, Histogram } from 'prom-client';
import type { MetricsRegistry } from '../telemetry/metrics-registry.js';

export type KubeErrorReason = 'gone' | 'unauthorized' | 'forbidden' | 'throttled' | 'server' | 'network' | 'stalled' | 'absent' | 'decode' | 'closed-early' | 'other';

export class KubeMetrics {
  readonly requests: Counter<'resource' | 'verb' | 'code'>;
  readonly watchEvents: Counter<'resource' | 'type'>;
  readonly errors: Counter<'resource' | 'reason'>;
  readonly relists: Counter<'resource'>;
  readonly watchConnected: Gauge<'resource'>;
  readonly synced: Gauge<'resource'>;
  readonly absent: Gauge<'resource'>;
  readonly objects: Gauge<'resource'>;
  readonly lastEvent: Gauge<'resource'>;
  readonly objectProblems: Gauge<'kind'>;
  readonly objectRejections: Counter<'kind' | 'reason'>;
  readonly applies: Counter<'result'>;
  readonly eventsDropped: Counter<'kind'>;
  readonly eventToSnapshot: Histogram;

  constructor(m: MetricsRegistry) {
    this.requests = m.counter('weft_k8s_requests_total', 'API server requests by resource, verb (list, watch, create) and HTTP status', ['resource', 'verb', 'code']);
    this.watchEvents = m.counter('weft_k8s_watch_events_total', 'Watch events received by resource and type (ADDED, MODIFIED, DELETED, BOOKMARK, ERROR)', ['resource', 'type']);
    this.errors = m.counter('weft_k8s_errors_total', 'List and watch failures by resource and reason; each is retried', ['resource', 'reason']);
    this.relists = m.counter('weft_k8s_relists_total', 'Full lists by resource (start, 410 Gone, restart)', ['resource']);
    this.watchConnected = m.gauge('weft_k8s_watch_connected', '1 while a watch stream of the resource is open', ['resource']);
    this.synced = m.gauge('weft_k8s_synced', '1 once the resource has been listed completely', ['resource']);
    this.absent = m.gauge('weft_k8s_resource_absent', '1 while an optional resource (a CRD) is not served by the cluster', ['resource']);
    this.objects = m.gauge('weft_k8s_objects', 'Objects held per resource (stripped)', ['resource']);
    this.lastEvent = m.gauge('weft_k8s_last_event_timestamp_seconds', 'Unix time of the last list page, watch event or bookmark per resource (staleness while the API server is unreachable)', ['resource']);
    this.objectProblems = m.gauge('weft_k8s_object_problems', 'Objects currently rejected (their last good version, if any, keeps serving)', ['kind']);
    this.objectRejections = m.counter('weft_k8s_object_rejections_total', 'Object versions rejected by kind and reason', ['kind', 'reason']);
    this.eventsDropped = m.counter('weft_k8s_events_dropped_total', 'Kubernetes Events about rejected objects not posted because of the rate limit (per object, and for the whole source)', ['kind']);
    this.applies = m.counter('weft_k8s_snapshot_applies_total', 'Model snapshots from the Kubernetes source by result (applied: rebuilt, patched: derived from the previous one by a pod change, rejected)', ['result']);
    this.eventToSnapshot = m.histogram('weft_k8s_event_to_snapshot_seconds', 'Time from a watch event arriving to the snapshot that contains it serving', [], [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5]);
  }
}
