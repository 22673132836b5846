/** Routes of the three endpoints, as ztunnel splits them: admin (127.0.0.1 only: config_dump, logging, quitquitquit), metrics, readiness. */
import type { RouteHandler } from './http-endpoint.js';
import { json } from './http-endpoint.js';
import { isLogLevel, logLevels, setLogLevel, type LogLevel } from '../log.js';
import type { MetricsRegistry } from '../telemetry/metrics-registry.js';
import type { ProxyState } from '../state/proxy-state.js';

export interface AdminSources {
  state: ProxyState;
  /** The registry, or (several worker threads) anything that renders the process's aggregated metrics. */
  metrics: Pick<MetricsRegistry, 'render' | 'contentType'>;
  isReady: () => boolean;
  listeners: () => Record<string, unknown>;
  /** Starts a graceful shutdown (POST /quitquitquit). */
  quit: () => void;
  /** Extra sections other subsystems add to /config_dump (plugins, certificates, ...). */
  dumpSections: () => Record<string, unknown> | Promise<Record<string, unknown>>;
  /** Told after POST /logging changed levels (the multi-worker primary passes them on to every worker). */
  logLevelsChanged?: (levels: Record<string, LogLevel>) => void;
}

export function readinessRoutes(s: Pick<AdminSources, 'isReady'>): Record<string, RouteHandler> {
  return { '/healthz/ready': () => (s.isReady() ? { status: 200, body: 'ready\n' } : { status: 503, body: 'not ready\n' }) };
}

export function metricsRoutes(s: Pick<AdminSources, 'metrics'>): Record<string, RouteHandler> {
  const render: RouteHandler = async () => ({ status: 200, body: await s.metrics.render(), contentType: s.metrics.contentType });
  return { '/stats/prometheus': render, '/metrics': render };
}

export function adminRoutes(s: AdminSources): Record<string, RouteHandler> {
  return {
    ...readinessRoutes(s),
    ...metricsRoutes(s),
    '/config_dump': async () => {
      const snap = s.state.current;
      const sections = await s.dumpSections();
      return json(200, {
        version: snap.version,
        node: snap.config.node,
        trustDomain: snap.config.trustDomain,
        listeners: s.listeners(),
        workloads: snap.workloads.map(({ attachment, ...w }) => ({ ...w, plugins: attachment?.plugins ?? [] })),
        services: snap.services.map(({ endpoints, attachment, ...svc }) => ({ ...svc, endpoints: endpoints.map((e) => e.uid), plugins: attachment?.plugins ?? [] })),
        policies: snap.policies,
        plugins: snap.config.plugins.map(({ config: _config, ...p }) => p),
        localPorts: snap.config.localPorts,
        ...sections,
      });
    },
    '/logging': (req, url) => {
      // Istio's /logging: ?level=debug sets all, ?<component>=<level> sets one; changes need POST/PUT.
      if (req.method === 'POST' || req.method === 'PUT') {
        for (const [key, value] of url.searchParams) {
          if (!isLogLevel(value)) return { status: 400, body: `unknown level "${value}" (trace, debug, info, warn, error, off)\n` };
          if (key === 'level') setLogLevel(value);
          else setLogLevel(value, key);
        }
        s.logLevelsChanged?.(logLevels());
      }
      return json(200, logLevels());
    },
    '/quitquitquit': (req) => {
      if (req.method !== 'POST') return { status: 405, body: 'use POST\n' };
      s.quit();
      return { status: 200, body: 'draining\n' };
    },
  };
}
