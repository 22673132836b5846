// Starts a whole weft runtime in-process on port-0 listeners, collecting its access-log lines and scraping its metrics.
import { createApp, type App } from '../../runtime/app.js';
import { configSchema, type WeftConfig } from '../../runtime/config/config-schema.js';
import { setLogSink } from '../../runtime/log.js';
import { LineWaiters } from './line-waiters.js';

export type AccessLogEntry = Record<string, unknown>;

export interface WeftUnderTest {
  app: App;
  accessLog: AccessLogEntry[];
  logs: Record<string, unknown>[];
  metrics(): Promise<string>;
  /** Waits until an access-log line matching `pred` appears (lines are written when connections close). */
  waitForLog(pred: (e: AccessLogEntry) => boolean, timeoutMs?: number): Promise<AccessLogEntry>;
  close(): Promise<void>;
}

export const TEST_LISTENERS = {
  outbound: { address: '127.0.0.1:0' },
  inbound: { address: '127.0.0.1:0' },
  explicitProxy: { address: '127.0.0.1:0' },
  admin: '127.0.0.1:0',
  metrics: '127.0.0.1:0',
  readiness: '127.0.0.1:0',
};

/** A full config from a partial raw one, with every listener on port 0. */
export function testConfig(raw: Record<string, unknown> = {}): WeftConfig {
  return configSchema.parse({ listeners: TEST_LISTENERS, ...raw });
}

export async function startWeft(raw: Record<string, unknown> = {}): Promise<WeftUnderTest> {
  const accessLog: AccessLogEntry[] = [];
  const logs: Record<string, unknown>[] = [];
  const waiters = new LineWaiters(accessLog);
  const previousSink = setLogSink((line) => logs.push(JSON.parse(line) as Record<string, unknown>));
  const app = await createApp(testConfig(raw), {
    accessLogSink: (line) => {
      accessLog.push(JSON.parse(line) as AccessLogEntry);
      waiters.notify();
    },
  });
  return {
    app,
    accessLog,
    logs,
    metrics: async () => {
      const res = await fetch(`http://127.0.0.1:${app.ports.metrics}/stats/prometheus`);
      return res.text();
    },
    waitForLog: (pred, timeoutMs = 5_000) => waiters.waitFor(pred, timeoutMs, () => `no access-log line matched within ${timeoutMs} ms; have: ${JSON.stringify(accessLog)}`),
    close: async () => {
      await app.shutdown(100);
      setLogSink(previousSink);
    },
  };
}

/** Value of one Prometheus sample whose labels include all of `labels` (sum over matches). */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name + '{') && !line.startsWith(name + ' ')) continue;
    if (!Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}
