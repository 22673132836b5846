/** Every default and environment-variable name of weft in one place; nothing else reads process.env. */

/** Istio-compatible ports (ztunnel ARCHITECTURE.md); all overridable in weft.yaml, tests bind port 0. */
export const DEFAULT_PORTS = {
  outbound: 15001,
  inbound: 15006,
  hbone: 15008,
  dns: 15053,
  admin: 15000,
  metrics: 15020,
  readiness: 15021,
  explicitProxy: 15080,
} as const;

/** Connect timeout: Envoy's cluster default is 5 s, ztunnel uses 10 s for HBONE; 5 s keeps a dead endpoint from holding clients. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;
/** Idle timeout of an L4 connection: Envoy tcp_proxy defaults to 1 h; 0 disables. */
export const DEFAULT_IDLE_TIMEOUT_MS = 3_600_000;
/** Ceiling on concurrently proxied connections per listener family (Envoy has no default; 100k fits 16 KB/conn in 1.6 GB). */
export const DEFAULT_MAX_CONNECTIONS = 100_000;
/** Drain deadline after SIGTERM: ztunnel's CONNECTION_TERMINATION_DEADLINE default for a 30 s grace period is 25 s; 5 s suits a laptop. */
export const DEFAULT_DRAIN_DEADLINE_MS = 5_000;
/** How long a failed endpoint is skipped by round robin before it is tried again (Envoy's base ejection time is 30 s). */
export const DEFAULT_ENDPOINT_BACKOFF_MS = 5_000;
/** Bound on the bytes of a SOCKS5 or CONNECT handshake and the time to send it (ztunnel closes handshakes after 5 s). */
export const MAX_HANDSHAKE_BYTES = 16 * 1024;
export const HANDSHAKE_TIMEOUT_MS = 5_000;

export const DEFAULT_TRUST_DOMAIN = 'cluster.local';
/** Workload certificate lifetime: Istio's SECRET_TTL default. */
export const DEFAULT_CERT_TTL_SECONDS = 86_400;
/** HBONE pool and HTTP/2 flow control as ztunnel ships them (src/config.rs): 4 MiB stream / 16 MiB connection windows, 1 MiB frames, 100 streams, 5 min idle release. */
export const HBONE_DEFAULTS = {
  maxStreamsPerConnection: 100,
  poolIdleTimeoutMs: 300_000,
  streamWindowBytes: 4 * 1024 * 1024,
  connectionWindowBytes: 16 * 1024 * 1024,
  maxFrameBytes: 1024 * 1024,
} as const;
export const DEFAULT_CLUSTER_DOMAIN = 'svc.cluster.local';

/*
 * Defaults the data path falls back on without a parsed config at hand. They live here, not only in the zod schemas
 * that apply them, so the L7 path and shared state need not import the schemas: zod is 228 module files, about 6 MB
 * of an L7 node's RSS, and is otherwise loaded only in the config loader's child process.
 */
/** DestinationRule connectionPool per upstream, as Envoy's cluster circuit-breaker thresholds default (1024). */
export const CONNECTION_POOL_DEFAULTS = {
  maxConnections: 1024,
  maxPendingRequests: 1024,
  maxRequests: 1024,
  maxRetries: 3,
  connectTimeoutMs: 5000,
  idleTimeoutMs: 60_000,
  maxRequestsPerConnection: 0,
} as const;
/** `l7:` limits of the HTTP path (Envoy's header limits, timeouts, HTTP/2 rapid-reset bound). */
export const L7_LIMITS_DEFAULTS = {
  maxRequestHeadersBytes: 60 * 1024,
  maxHeaders: 100,
  headersTimeoutMs: 10_000,
  idleTimeoutMs: 300_000,
  maxBufferedBodyBytes: 1024 * 1024,
  h2MaxResetsPerSecond: 200,
  h2MaxConcurrentStreams: 100,
} as const;
/** `circuitBreakers.defaults`: the shared breaker's settings for an upstream without its own. */
export const CIRCUIT_BREAKER_DEFAULTS = {
  failureRateThreshold: 50,
  minimumCalls: 20,
  windowMs: 10_000,
  openMs: 5_000,
  halfOpenProbes: 1,
  probeTimeoutMs: 2_000,
  minReportingNodes: 1,
  flushIntervalMs: 100,
  pollIntervalMs: 1_000,
} as const;

/** Environment variables weft reads (only here). */
export const ENV = {
  /** Path of the configuration file when `--config` is not given. */
  configPath: 'WEFT_CONFIG',
  /** Log level: trace|debug|info|warn|error|off. */
  logLevel: 'WEFT_LOG_LEVEL',
  /** Node name, overriding `node:` in the file (the DaemonSet sets it from spec.nodeName). */
  nodeName: 'WEFT_NODE_NAME',
  /** `1` turns off the L4 copy on libuv handles (runtime/l4/handle-copy.ts), a kill switch for its use of Node internals. */
  l4StreamCopy: 'WEFT_L4_STREAM_COPY',
  /** `0` turns off the L4 copy pump of the native addon (runtime/l4/native-copy.ts); the libuv-handle copy runs instead. */
  l4NativeCopy: 'WEFT_L4_NATIVE_COPY',
  /** `1` turns off HTTP/1 I/O on libuv handles in the L7 path (runtime/l7/http1-handle-transport.ts), its kill switch. */
  l7StreamIo: 'WEFT_L7_STREAM_IO',
  /** `0` turns off the addon's batched socket I/O in the L7 path (runtime/l7/http1-native-transport.ts), its kill switch. */
  l7NativeIo: 'WEFT_L7_NATIVE_IO',
  /** `0` turns off TLS session resumption of HBONE clients (runtime/hbone/tls-session-cache.ts): every connection does a full handshake, as ztunnel's does. */
  hboneResumption: 'WEFT_HBONE_RESUMPTION',
  /** With `source: kubernetes`: this node's name (the DaemonSet sets it from spec.nodeName), as ztunnel and istio-cni read it. */
  kubeNodeName: 'NODE_NAME',
  /** With `source: kubernetes` outside a cluster: the kubeconfig file(s), colon-separated, as kubectl reads them. */
  kubeconfig: 'KUBECONFIG',
  /** In a cluster: the API server's address, set by the kubelet in every container. */
  kubernetesServiceHost: 'KUBERNETES_SERVICE_HOST',
  kubernetesServicePort: 'KUBERNETES_SERVICE_PORT',
  /** Unix socket through which `weft run --takeover` reaches the running weft (default: one per config file in the temp dir). */
  takeoverSocket: 'WEFT_TAKEOVER_SOCKET',
} as const;

export function envValue(name: (typeof ENV)[keyof typeof ENV]): string | undefined {
  const value = process.env[name];
  return value === undefined || value === '' ? undefined : value;
}
