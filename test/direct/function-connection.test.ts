// The in-process connection between the L7 path and a function behaves as a TCP socket would: when the function's
// server side ends it, the client side closes. (A duplexPair end is half-open: the client only read EOF and stayed
// open, so the L7 pool kept it idle and the next request written to it was never answered: the burst-test timeout.)
import { afterAll, beforeAll, expect, it } from 'vitest';
import { configSchema } from '../../runtime/config/config-schema.js';
import { functionAddress } from '../../runtime/functions/function-entities.js';
import { FunctionHost } from '../../runtime/functions/function-host.js';
import { createLogger } from '../../runtime/log.js';
import { ProxyState } from '../../runtime/state/proxy-state.js';
import { MetricsRegistry } from '../../runtime/telemetry/metrics-registry.js';
import { fixtureBuildDir, functionFixture } from '../helpers/function-fixtures.js';
import { join } from 'node:path';

let host: FunctionHost;
let address: string;

beforeAll(async () => {
  const lab = await functionFixture('lab');
  const fn = { name: 'conn', namespace: 'default', url: lab.url, sha256: lab.sha256 };
  const config = configSchema.parse({ functions: [fn] });
  host = new FunctionHost({ metrics: new MetricsRegistry(), logger: createLogger('fn'), cacheDir: join(fixtureBuildDir(), 'cache', 'functions'), state: new ProxyState(config), l7: () => undefined });
  const admitted = await host.apply(config);
  expect(admitted.ok).toBe(true);
  address = functionAddress(fn);
}, 900_000);

afterAll(() => host?.close());

it('closes the client side when the function side ends the connection (no half-open zombie for the L7 pool)', async () => {
  const client = host.connector(() => {
    throw new Error('only the function is reachable');
  })(address, 80, undefined);
  let text = '';
  client.setEncoding('latin1');
  client.on('data', (c: string) => (text += c));
  const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
  client.write('GET /hello HTTP/1.1\r\nhost: conn.default\r\nconnection: close\r\n\r\n');
  await closed;
  expect(text).toMatch(/^HTTP\/1\.1 200 /);
  expect(text).toContain('lab /hello');
  expect(client.destroyed).toBe(true);
}, 60_000);
