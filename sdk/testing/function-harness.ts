/**
 * Runs a function component through weft's own function host (admission, worker-thread instance, WASI 0.2 host),
 * without a mesh around it: what a function author's tests call. `fetch` sends one request and returns the answer.
 */
import { createHash } from 'node:crypto';
import http from 'node:http';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { configSchema } from '../../runtime/config/config-schema.js';
import { functionAddress } from '../../runtime/functions/function-entities.js';
import { FunctionHost } from '../../runtime/functions/function-host.js';
import { createLogger } from '../../runtime/log.js';
import { ProxyState } from '../../runtime/state/proxy-state.js';
import { MetricsRegistry } from '../../runtime/telemetry/metrics-registry.js';

export interface FunctionUnderTest {
  fetch(path: string, init?: { method?: string; headers?: Record<string, string>; body?: string | Uint8Array }): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }>;
  close(): void;
}

/** Admits `wasmPath` as function `name.default` with `limits`/`env` as in weft.yaml, in this process. */
export async function serveFunction(wasmPath: string, options: { limits?: Record<string, number>; env?: Record<string, string> } = {}): Promise<FunctionUnderTest> {
  const bytes = await readFile(wasmPath);
  const fn = { name: 'under-test', namespace: 'default', url: pathToFileURL(resolve(wasmPath)).href, sha256: createHash('sha256').update(bytes).digest('hex'), ...options };
  const config = configSchema.parse({ functions: [fn] });
  const host = new FunctionHost({
    metrics: new MetricsRegistry(),
    logger: createLogger('fn'),
    cacheDir: process.env.WEFT_CACHE_DIR === undefined ? join(await mkdtemp(join(tmpdir(), 'weft-fn-test-')), 'functions') : join(process.env.WEFT_CACHE_DIR, 'functions'),
    state: new ProxyState(config),
    l7: () => undefined,
  });
  const admitted = await host.apply(config);
  if (!admitted.ok) throw new Error(admitted.problems.map((p) => p.reason).join('; '));
  const connect = host.connector(() => {
    throw new Error('only the function under test is reachable');
  });
  const address = functionAddress(fn);
  return {
    fetch: (path, init = {}) =>
      new Promise((resolveAnswer, reject) => {
        const req = http.request({ method: init.method ?? 'GET', path, headers: { host: 'under-test.default', ...init.headers }, createConnection: () => connect(address, 80) }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolveAnswer({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }));
          res.on('error', reject);
        });
        req.on('error', reject);
        req.end(init.body);
      }),
    close: () => host.close(),
  };
}
