/**
 * Runs a component filter (world weft:filter/http-filter) through weft's own filter host and L7 adapter, without a
 * proxy around it: what a filter author's tests call. `request` and `response` run one phase each on a header list
 * and return the edited headers, the request line and the local reply (if the filter answered).
 */
import { createHash } from 'node:crypto';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { pluginSchema } from '../../runtime/config/config-schema.js';
import { ComponentFilterHost } from '../../runtime/functions/component-filter-host.js';
import { componentL7Filter } from '../../runtime/l7/component-filter-stream.js';
import { HeaderList } from '../../runtime/l7/header-list.js';
import type { FilterRequestInfo, FilterStatus, L7FilterStream, LocalReply } from '../../runtime/l7/l7-filter.js';
import { createLogger } from '../../runtime/log.js';
import { MetricsRegistry } from '../../runtime/telemetry/metrics-registry.js';

export interface FilterRequest {
  method?: string;
  path?: string;
  authority?: string;
  headers?: [string, string][];
  sourcePrincipal?: string;
}

export interface PhaseResult {
  /** The header list after the phase, as [name, value] pairs. */
  headers: [string, string][];
  /** The local reply when the filter answered instead of continuing. */
  reply: LocalReply | undefined;
  /** The request line after a request phase (the filter may rewrite :method, :path, :authority). */
  line: { method: string; path: string; authority: string };
}

export interface FilterUnderTest {
  /** One request: its headers phase (then, for an answer that continues, `response` may follow on the same stream). */
  request(req?: FilterRequest): Promise<PhaseResult & { response(status: number, headers?: [string, string][]): Promise<PhaseResult> }>;
  close(): void;
}

async function settle(status: FilterStatus): Promise<LocalReply | undefined> {
  return status instanceof Promise ? await status : status;
}

/** Admits `wasmPath` as plugin `under-test` with `config` (its JSON reaches configure) and optional limits. */
export async function serveFilter(wasmPath: string, options: { config?: unknown; limits?: { cpuMs?: number; memoryMb?: number } } = {}): Promise<FilterUnderTest> {
  const bytes = await readFile(wasmPath);
  const config = pluginSchema.parse({
    name: 'under-test',
    url: pathToFileURL(resolve(wasmPath)).href,
    sha256: createHash('sha256').update(bytes).digest('hex'),
    kind: 'component',
    ...(options.config === undefined ? {} : { config: options.config }),
    ...(options.limits === undefined ? {} : { limits: options.limits }),
  });
  const host = new ComponentFilterHost({
    metrics: new MetricsRegistry(),
    logger: createLogger('wasm'),
    cacheDir: process.env.WEFT_CACHE_DIR === undefined ? join(await mkdtemp(join(tmpdir(), 'weft-filter-test-')), 'functions') : join(process.env.WEFT_CACHE_DIR, 'functions'),
    idleMs: 0,
  });
  const prepared = await host.prepare([config]);
  if (!prepared.ok) throw new Error(prepared.problems.map((p) => p.reason).join('; '));
  prepared.commit();
  const filter = componentL7Filter(host.get('under-test')!);
  let ids = 0;
  return {
    async request(req = {}) {
      const line = { method: req.method ?? 'GET', path: req.path ?? '/', authority: req.authority ?? 'example.test' };
      const info: FilterRequestInfo = {
        ...line,
        protocol: 'HTTP/1.1',
        sourceAddress: '127.0.0.1',
        sourceIdentity: req.sourcePrincipal,
        destinationService: 'under-test.default.svc.cluster.local',
        requestId: `test-${++ids}`,
      };
      const headers = new HeaderList((req.headers ?? []).flatMap(([n, v]) => [n.toLowerCase(), v]));
      const stream = filter.start(info, {
        replaceRequestBody: () => undefined,
        replaceResponseBody: () => undefined,
        setRequestLine: (method, path, authority) => Object.assign(line, { method, path, authority }),
        clearRouteCache: () => undefined,
        setResponseStatus: () => undefined,
      }) as L7FilterStream;
      const reply = await settle(stream.onRequestHeaders?.(headers, true));
      return {
        headers: headers.pairs(),
        reply,
        line,
        async response(status, responseHeaders = []) {
          const list = new HeaderList(responseHeaders.flatMap(([n, v]) => [n.toLowerCase(), v]));
          const r = await settle(stream.onResponseHeaders?.(status, list, true));
          return { headers: list.pairs(), reply: r, line };
        },
      };
    },
    close() {
      host.close();
    },
  };
}
