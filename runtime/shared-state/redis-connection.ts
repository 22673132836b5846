/** Opens ioredis clients (single, sentinel, cluster) with weft's failure settings: no offline queue, bounded command and connect times, capped backoff; plus a health gate that fails fast while Redis is black-holed. */
import { createRequire } from 'node:module';
import type * as IoRedis from 'ioredis';
import type { Cluster, ClusterOptions, Redis, RedisOptions } from 'ioredis';
import { WeftError } from '../errors.js';
import type { RedisConfig } from '../config/config-schema.js';
import type { Logger } from '../log.js';

export type RedisClient = Redis | Cluster;

/**
 * ioredis (CommonJS, 85 module files) is required with the first client, not at import: the L7 path imports the
 * Redis backend with the memory backend too, and an idle node on the memory backend need not hold it.
 */
const require = createRequire(import.meta.url);
const ioredis = (): typeof IoRedis => require('ioredis') as typeof IoRedis;

/** Reconnect backoff: 50 ms steps capped at 500 ms, so a restarted Redis is back in use well within 1 s. */
export const RECONNECT_CAP_MS = 500;
const backoff = (attempt: number): number => Math.min(attempt * 50, RECONNECT_CAP_MS);

interface Endpoint {
  host: string;
  port: number;
  username: string;
  password: string;
  tls: boolean;
}

function parseEndpoint(text: string): Endpoint {
  let url: URL;
  try {
    url = new URL(text.includes('://') ? text : `redis://${text}`);
  } catch (err) {
    throw new WeftError('WEFT_ERR_CONFIG_INVALID', `state.redis: "${text}" is not a URL; use redis://[user:password@]host:port`, { cause: err });
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
    throw new WeftError('WEFT_ERR_CONFIG_INVALID', `state.redis: unsupported URL scheme "${url.protocol}" in ${url.host}; use redis:// or rediss://`);
  }
  return {
    host: url.hostname.replace(/^\[|\]$/g, '') || '127.0.0.1',
    port: url.port === '' ? 6379 : Number(url.port),
    username: decodeURIComponent(url.username),
    password: decodeURIComponent(url.password),
    tls: url.protocol === 'rediss:',
  };
}

function endpoints(config: RedisConfig): Endpoint[] {
  const list = [...(config.url === undefined ? [] : [config.url]), ...(config.urls ?? [])];
  if (list.length === 0) throw new WeftError('WEFT_ERR_CONFIG_INVALID', 'state.redis needs url or urls (redis://host:port)');
  return list.map(parseEndpoint);
}

/** Credentials and TLS from the URLs (ACL user and password as in redis://user:password@host:port; rediss:// for TLS). */
function security(nodes: Endpoint[]): RedisOptions {
  const withAuth = nodes.find((n) => n.password !== '');
  return {
    ...(withAuth === undefined ? {} : { password: withAuth.password, ...(withAuth.username === '' ? {} : { username: withAuth.username }) }),
    ...(nodes.some((n) => n.tls) ? { tls: {} } : {}),
  };
}

/**
 * Options shared by every connection. The offline queue is off: a command issued while disconnected fails at
 * once instead of being replayed after reconnect, long after the request it decided has been answered (the
 * "ghost increments" measured in reference/rate-limit-and-breakers.md §4.2). Connect time is not on any
 * request's path (nothing queues), so it may be longer than the command timeout.
 */
function baseOptions(config: RedisConfig): RedisOptions {
  return {
    enableOfflineQueue: false,
    commandTimeout: config.timeoutMs,
    connectTimeout: Math.max(config.timeoutMs * 10, 500),
    maxRetriesPerRequest: 0,
    retryStrategy: backoff,
    // A failover leaves us talking to a demoted replica; reconnecting asks the sentinels again. No resend (1, not 2).
    reconnectOnError: (err) => (err.message.startsWith('READONLY') ? 1 : false),
    lazyConnect: false,
  };
}

export function createRedisClient(config: RedisConfig, role: 'command' | 'subscriber'): RedisClient {
  const nodes = endpoints(config);
  const base = { ...baseOptions(config), ...security(nodes) };
  // Subscribers hold no request: let their commands (SUBSCRIBE) wait for a connection instead of failing.
  const roleOptions: RedisOptions = role === 'subscriber' ? { enableOfflineQueue: true, commandTimeout: undefined, maxRetriesPerRequest: null } : {};
  if (config.mode === 'cluster') {
    const { enableOfflineQueue, retryStrategy: _r, ...redisOptions } = { ...base, ...roleOptions };
    const options: ClusterOptions = {
      enableOfflineQueue,
      clusterRetryStrategy: backoff,
      redisOptions,
      maxRedirections: 16,
      retryDelayOnMoved: 0,
      retryDelayOnClusterDown: 100,
      retryDelayOnTryAgain: 20,
      slotsRefreshTimeout: Math.max(config.timeoutMs * 10, 1000),
    };
    return new (ioredis().Cluster)(
      nodes.map((n) => ({ host: n.host, port: n.port })),
      options,
    );
  }
  if (config.mode === 'sentinel') {
    if (config.sentinelName === undefined) throw new WeftError('WEFT_ERR_CONFIG_INVALID', 'state.redis.mode sentinel needs sentinelName (the monitored master name)');
    return new (ioredis().Redis)({
      ...base,
      ...roleOptions,
      sentinels: nodes.map((n) => ({ host: n.host, port: n.port })),
      name: config.sentinelName,
      sentinelRetryStrategy: backoff,
      sentinelCommandTimeout: Math.max(config.timeoutMs * 10, 500),
      failoverDetector: true,
    });
  }
  const [first] = nodes;
  return new (ioredis().Redis)({ ...base, ...roleOptions, host: first?.host, port: first?.port });
}

/**
 * Fails requests fast while Redis is black-holed (SIGSTOP, dead route: the socket stays open and only the
 * command timeout notices). After `threshold` consecutive failures the gate closes; a PING every
 * `probeIntervalMs` (bounded by the command timeout) reopens it, so decisions are back within one interval.
 */
export class RedisHealthGate {
  readonly #client: RedisClient;
  readonly #logger: Logger;
  readonly #threshold: number;
  readonly #probeIntervalMs: number;
  #consecutiveFailures = 0;
  #open = true;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(client: RedisClient, logger: Logger, options: { threshold?: number; probeIntervalMs?: number } = {}) {
    this.#client = client;
    this.#logger = logger;
    this.#threshold = options.threshold ?? 3;
    this.#probeIntervalMs = options.probeIntervalMs ?? 100;
  }

  /** Connected, ready and not tripped. */
  healthy(): boolean {
    return this.#open && this.#client.status === 'ready';
  }

  succeeded(): void {
    this.#consecutiveFailures = 0;
  }

  failed(): void {
    if (++this.#consecutiveFailures >= this.#threshold && this.#open) {
      this.#open = false;
      this.#logger.warn({ failures: this.#consecutiveFailures }, 'redis unresponsive, failing fast until it answers a ping');
      this.#schedule();
    }
  }

  #schedule(): void {
    if (this.#closed) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#client.ping().then(
        () => {
          this.#open = true;
          this.#consecutiveFailures = 0;
          this.#logger.info({}, 'redis answering again');
        },
        () => this.#schedule(),
      );
    }, this.#probeIntervalMs);
    this.#timer.unref();
  }

  close(): void {
    this.#closed = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
  }
}
