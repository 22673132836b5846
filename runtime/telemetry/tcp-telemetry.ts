/** Istio TCP metrics (istio_tcp_*) and the per-connection access-log line; byte counters are added once, when the connection closes. */
import type { Counter, Gauge } from 'prom-client';
import type { MetricsRegistry } from './metrics-registry.js';
import type { AccessLog } from './access-log.js';
import { TCP_LABEL_NAMES, type TcpLabelName, type TcpLabels } from './connection-labels.js';

export class TcpTelemetry {
  readonly #opened: Counter<TcpLabelName>;
  readonly #closed: Counter<TcpLabelName>;
  readonly #failed: Counter<TcpLabelName>;
  readonly #sent: Counter<TcpLabelName>;
  readonly #received: Counter<TcpLabelName>;
  readonly #open: Gauge<'reporter'>;
  readonly accessLog: AccessLog;

  constructor(metrics: MetricsRegistry, accessLog: AccessLog) {
    this.accessLog = accessLog;
    this.#opened = metrics.counter('istio_tcp_connections_opened_total', 'TCP connections opened', TCP_LABEL_NAMES);
    this.#closed = metrics.counter('istio_tcp_connections_closed_total', 'TCP connections closed', TCP_LABEL_NAMES);
    this.#failed = metrics.counter('istio_tcp_connections_failed_total', 'TCP connections that failed to reach their upstream', TCP_LABEL_NAMES);
    this.#sent = metrics.counter('istio_tcp_sent_bytes_total', 'Bytes sent to the downstream (response direction)', TCP_LABEL_NAMES);
    this.#received = metrics.counter('istio_tcp_received_bytes_total', 'Bytes received from the downstream (request direction)', TCP_LABEL_NAMES);
    this.#open = metrics.gauge('istio_tcp_sockets_open', 'Proxied TCP connections currently open', ['reporter']);
  }

  opened(labels: TcpLabels): void {
    this.#opened.inc(labels);
    this.#open.inc({ reporter: labels.reporter });
  }

  closed(labels: TcpLabels, bytesSent: number, bytesReceived: number): void {
    this.#closed.inc(labels);
    this.#open.dec({ reporter: labels.reporter });
    if (bytesSent > 0) this.#sent.inc(labels, bytesSent);
    if (bytesReceived > 0) this.#received.inc(labels, bytesReceived);
  }

  failed(labels: TcpLabels): void {
    this.#failed.inc(labels);
  }
}
