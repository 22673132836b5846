/**
 * The functions of a weft instance: admits `functions:` (a failed admission rejects the config, the previous
 * version keeps serving), keeps one FunctionPool per function, and answers the L7 path's upstream connections to a
 * function's workload address with an in-process HTTP/1.1 server. So a function is an upstream like any other:
 * routing, retries, timeouts, authorization, plugins and telemetry of the L7 path apply in front of it.
 */
import http from 'node:http';
import { duplexPair, type Duplex } from 'node:stream';
import type { WeftConfig } from '../config/config-schema.js';
import type { FunctionConfig } from '../config/function-config-schema.js';
import type { ConnectFn } from '../l7/http1-pool.js';
import type { Logger } from '../log.js';
import type { MetricsRegistry } from '../telemetry/metrics-registry.js';
import { admitComponent, defaultFunctionCacheDir, fetchComponent } from './component-admission.js';
import { functionAddress, functionKey, isFunctionRange } from './function-entities.js';
import { localAnswer } from './function-exchange.js';
import { functionMetrics, type FunctionMetrics } from './function-metrics.js';
import { FunctionOutbound, type OutboundDeps } from './function-outbound.js';
import { FunctionPool } from './function-pool.js';

export interface FunctionHostOptions {
  metrics: MetricsRegistry;
  logger: Logger;
  /** Transpiled components by sha256 (survives restarts); defaultFunctionCacheDir() when absent. */
  cacheDir?: string;
  state: OutboundDeps['state'];
  l7: OutboundDeps['l7'];
}

export type FunctionLoadResult = { ok: true } | { ok: false; problems: { fn: string; reason: string }[] };

/** What makes two configs of a function need a new admission (anything else updates the running pool). */
function artifactKey(f: FunctionConfig): string {
  return `${f.url}|${f.sha256 ?? ''}|${f.limits.memoryMb}`;
}

export class FunctionHost {
  readonly metrics: FunctionMetrics;
  readonly #opts: FunctionHostOptions;
  readonly #cacheDir: string;
  /** Pools by function key, and by workload address for the connector. */
  #pools = new Map<string, { pool: FunctionPool; artifact: string }>();
  #byAddress = new Map<string, FunctionPool>();
  readonly #server: http.Server;
  readonly #outbound: FunctionOutbound;

  constructor(opts: FunctionHostOptions) {
    this.#opts = opts;
    this.#cacheDir = opts.cacheDir ?? defaultFunctionCacheDir();
    this.metrics = functionMetrics(opts.metrics);
    this.#outbound = new FunctionOutbound({ state: opts.state, metrics: this.metrics, logger: opts.logger, l7: opts.l7 });
    // Timeouts are the L7 path's and the pool's business; this server only parses what the L7 path sends it.
    this.#server = http.createServer({ requestTimeout: 0, headersTimeout: 0, keepAliveTimeout: 0 }, (req, res) => this.#dispatch(req, res));
  }

  #dispatch(req: http.IncomingMessage, res: http.ServerResponse): void {
    const pool = (req.socket as Duplex & { weftFunction?: FunctionPool }).weftFunction;
    if (pool === undefined) return localAnswer(res, 503, 'WEFT_ERR_FN_LOAD', 'no function is loaded at this address');
    pool.dispatch(req, res);
  }

  /** Wraps the L7 path's upstream connector: a function's workload address gets an in-process connection. */
  connector(inner: ConnectFn): ConnectFn {
    return (address, port, identity) => {
      if (!isFunctionRange(address)) return inner(address, port, identity);
      const pool = this.#byAddress.get(address);
      if (pool === undefined) return inner(address, port, identity);
      const [client, server] = duplexPair();
      (server as Duplex & { weftFunction?: FunctionPool }).weftFunction = pool;
      // The L7 path must see a response cut mid-body as a reset, not as the EOF a duplexPair end gives its peer.
      (server as Duplex & { weftAbort?: () => void }).weftAbort = () => client.destroy(new Error('the function instance failed mid-response'));
      // A duplexPair end is half-open (allowHalfOpen): when the server ends the connection the client side only reads
      // EOF and never closes, so the L7 pool, which expects a TCP socket's end-then-close, kept it idle and the next
      // request written to it was never answered (the burst test's timeout). End it as a socket would.
      client.once('end', () => client.end());
      this.#server.emit('connection', server);
      return client;
    };
  }

  /**
   * Admits new or changed functions and drops removed ones. On any failure nothing changes and the problems are
   * returned (the caller keeps its previous config, so the previous version of each function keeps serving).
   */
  async apply(config: WeftConfig): Promise<FunctionLoadResult> {
    const problems: { fn: string; reason: string }[] = [];
    const admitted = new Map<string, { pool: FunctionPool; artifact: string }>();
    await Promise.all(
      config.functions.map(async (f) => {
        const key = functionKey(f);
        const artifact = artifactKey(f);
        const existing = this.#pools.get(key);
        if (existing?.artifact === artifact) return;
        try {
          const fetched = await fetchComponent(f.url, f.sha256);
          const admit = (): ReturnType<typeof admitComponent> => admitComponent(fetched.bytes, fetched.sha256, f.limits.memoryMb, this.#cacheDir);
          const compiled = await admit();
          this.#opts.logger.info({ fn: key, sha256: compiled.sha256, bytes: compiled.size, cached: compiled.cached, transpile_ms: Math.round(compiled.transpileMs), compile_ms: Math.round(compiled.compileMs) }, 'function admitted');
          const pool = new FunctionPool(key, f, compiled, { metrics: this.metrics, logger: this.#opts.logger, recompile: admit, outbound: (fn, m, reply) => this.#outbound.handle(fn, m, reply) });
          admitted.set(key, { pool, artifact });
        } catch (err) {
          problems.push({ fn: key, reason: err instanceof Error ? err.message : String(err) });
        }
      }),
    );
    if (problems.length > 0) {
      for (const { pool } of admitted.values()) pool.destroy();
      for (const p of problems) this.#opts.logger.error({ fn: p.fn, reason: p.reason }, 'function refused; the previous version keeps serving');
      return { ok: false, problems };
    }
    const next = new Map<string, { pool: FunctionPool; artifact: string }>();
    const byAddress = new Map<string, FunctionPool>();
    for (const f of config.functions) {
      const key = functionKey(f);
      // Every function was either admitted now or unchanged since its last admission.
      const entry = admitted.get(key) ?? this.#pools.get(key);
      if (entry === undefined) continue;
      entry.pool.update(f);
      next.set(key, entry);
      byAddress.set(functionAddress(f), entry.pool);
    }
    for (const [key, { pool }] of this.#pools) if (next.get(key)?.pool !== pool) pool.close();
    this.#pools = next;
    this.#byAddress = byAddress;
    return { ok: true };
  }

  pool(key: string): FunctionPool | undefined {
    return this.#pools.get(key)?.pool;
  }

  /** For /config_dump. */
  dump(): unknown {
    return [...this.#pools.values()].map(({ pool }) => ({ fn: pool.key, sha256: pool.sha256, instances: pool.instances, moduleLoaded: pool.moduleLoaded, address: functionAddress(pool.config) }));
  }

  close(): void {
    for (const { pool } of this.#pools.values()) pool.destroy();
    this.#pools.clear();
    this.#byAddress.clear();
    this.#server.close();
    this.#server.closeAllConnections();
  }
}
