/** The schema of weft.yaml (DESIGN.md "Configuration"): shapes and value ranges only; cross-references are checked in config-validate. */
import { z } from 'zod';
import { isIP } from 'node:net';
import { parseSocketAddress } from './socket-address.js';
import { l7LimitsSchema, serviceRoutesSchema, trafficPolicySchema } from './l7-config-schema.js';
import { functionSchema } from './function-config-schema.js';
import { dnsSchema } from './dns-config-schema.js';
import { DEFAULT_CERT_TTL_SECONDS, DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_DRAIN_DEADLINE_MS, DEFAULT_IDLE_TIMEOUT_MS, DEFAULT_MAX_CONNECTIONS, DEFAULT_PORTS, DEFAULT_TRUST_DOMAIN, HBONE_DEFAULTS, CIRCUIT_BREAKER_DEFAULTS as BREAKER } from './defaults.js';

const port = z.number().int().min(0).max(65535);
const ip = z.string().refine((s) => isIP(s) !== 0, { message: 'expected an IPv4 or IPv6 address' });
const name = z.string().regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, 'expected a DNS-1123 name (lower-case letters, digits, "-" and ".")');
const labels = z.record(z.string(), z.string());

/** "host:port" or "[v6]:port"; host must be an IP literal (listeners never resolve names). */
export const socketAddress = z.string().refine((s) => parseSocketAddress(s) !== undefined, {
  message: 'expected "ip:port" (IPv6 as "[ip]:port")',
});


const listener = z.strictObject({
  address: socketAddress,
  /** Accept connections addressed to any IP (TPROXY); needs CAP_NET_ADMIN and the native addon. */
  transparent: z.boolean().default(false),
});

export const listenersSchema = z.strictObject({
  outbound: listener.optional(),
  inbound: listener.optional(),
  hbone: listener.optional(),
  explicitProxy: listener.optional(),
  /** The DNS proxy, UDP and TCP on the same address (see `dns:`). */
  dns: socketAddress.optional(),
  admin: socketAddress.optional(),
  metrics: socketAddress.optional(),
  readiness: socketAddress.optional(),
});

export const redisSchema = z.strictObject({
  url: z.string().optional(),
  urls: z.array(z.string()).optional(),
  mode: z.enum(['single', 'sentinel', 'cluster']).default('single'),
  sentinelName: z.string().optional(),
  timeoutMs: z.number().int().positive().default(50),
  failMode: z.enum(['open', 'closed']).default('open'),
  keyPrefix: z.string().default('weft'),
}).superRefine((r, ctx) => {
  if (r.url === undefined && (r.urls === undefined || r.urls.length === 0)) ctx.addIssue({ code: 'custom', message: 'redis needs url or urls (redis://host:port)', path: ['url'] });
  if (r.mode === 'sentinel' && r.sentinelName === undefined) ctx.addIssue({ code: 'custom', message: 'mode sentinel needs sentinelName (the monitored master name)', path: ['sentinelName'] });
});

export const stateSchema = z.discriminatedUnion('backend', [
  z.strictObject({ backend: z.literal('memory') }),
  z.strictObject({ backend: z.literal('redis'), redis: redisSchema }),
]);

/** One rate-limit rule (envoyproxy/ratelimit descriptor semantics, flattened): entries match a request descriptor of the same length; an entry without value (or "*") gives each distinct value its own counter. */
export const rateLimitRuleSchema = z.strictObject({
  name: z.string().min(1).optional(),
  entries: z.array(z.strictObject({ key: z.string().min(1), value: z.string().optional() })).min(1),
  requestsPerUnit: z.number().int().min(0),
  unit: z.enum(['second', 'minute', 'hour', 'day']),
  algorithm: z.enum(['fixed', 'gcra']).default('fixed'),
  /** GCRA bucket size in requests; defaults to requestsPerUnit. */
  burst: z.number().int().positive().optional(),
  /** strict: every decision in the backend; local: decide on leased tokens (see runtime/shared-state/README.md for the bound). */
  mode: z.enum(['strict', 'local']).default('strict'),
  /**
   * What a decision is when the backend cannot answer within timeoutMs; defaults to state.redis.failMode.
   * local: this node enforces localShare × the limit on its own until the backend answers again.
   */
  failMode: z.enum(['open', 'closed', 'local']).optional(),
  /** With failMode local: the fraction of the limit one node admits alone (1/N for N nodes keeps the total near the limit). */
  localShare: z.number().gt(0).max(1).default(1),
  shadowMode: z.boolean().default(false),
  unlimited: z.boolean().default(false),
});

export const rateLimitDomainSchema = z.strictObject({
  domain: z.string().min(1),
  descriptors: z.array(rateLimitRuleSchema).default([]),
});

/** Shared circuit-breaker tuning (resilience4j/Hystrix-style failure rate over a time window). */
export const circuitBreakerSettingsSchema = z.strictObject({
  failureRateThreshold: z.number().min(1).max(100).default(BREAKER.failureRateThreshold),
  minimumCalls: z.number().int().positive().default(BREAKER.minimumCalls),
  windowMs: z.number().int().positive().default(BREAKER.windowMs),
  openMs: z.number().int().positive().default(BREAKER.openMs),
  /** Successful probes in HALF_OPEN before CLOSED; probes run one at a time across all nodes. */
  halfOpenProbes: z.number().int().positive().default(BREAKER.halfOpenProbes),
  probeTimeoutMs: z.number().int().positive().default(BREAKER.probeTimeoutMs),
  /** Distinct nodes that must have reported failures in the window before the shared breaker opens. */
  minReportingNodes: z.number().int().positive().default(BREAKER.minReportingNodes),
  flushIntervalMs: z.number().int().positive().default(BREAKER.flushIntervalMs),
  pollIntervalMs: z.number().int().positive().default(BREAKER.pollIntervalMs),
});

export const circuitBreakersSchema = z.strictObject({
  defaults: circuitBreakerSettingsSchema.default(circuitBreakerSettingsSchema.parse({})),
  upstreams: z.array(circuitBreakerSettingsSchema.partial().extend({ name: z.string().min(1) })).default([]),
});

export const workloadSchema = z.strictObject({
  name,
  namespace: name.default('default'),
  serviceAccount: name.default('default'),
  addresses: z.array(ip).min(1),
  node: z.string().optional(),
  protocol: z.enum(['HBONE', 'TCP']).default('TCP'),
  /** ztunnel's WDS health: unhealthy workloads get no new connections. */
  status: z.enum(['Healthy', 'Unhealthy']).default('Healthy'),
  labels: labels.default({}),
  annotations: labels.default({}),
  /** A workload waypoint, as `name.namespace` of a service that fronts weft's L7 on another node. */
  waypoint: z.string().optional(),
});

export const servicePortSchema = z.strictObject({
  name: z.string().optional(),
  port,
  targetPort: port.optional(),
  appProtocol: z.enum(['tcp', 'http', 'http2', 'grpc']).optional(),
});

export const serviceSchema = z.strictObject({
  name,
  namespace: name.default('default'),
  addresses: z.array(ip).default([]),
  ports: z.array(servicePortSchema).min(1),
  selector: labels.optional(),
  annotations: labels.default({}),
  waypoint: z.string().optional(),
});

export const namespaceSchema = z.strictObject({
  name,
  labels: labels.default({}),
  annotations: labels.default({}),
});

export const pluginSchema = z.strictObject({
  name,
  url: z.string().regex(/^(file|https|oci):\/\//, 'expected a file://, https:// or oci:// URL'),
  sha256: z.string().regex(/^[0-9a-f]{64}$/, 'expected 64 lower-case hex digits').optional(),
  phase: z.enum(['AUTHN', 'AUTHZ', 'STATS', 'UNSPECIFIED_PHASE']).default('UNSPECIFIED_PHASE'),
  priority: z.number().int().default(0),
  failStrategy: z.enum(['FAIL_CLOSE', 'FAIL_OPEN', 'FAIL_RELOAD']).default('FAIL_CLOSE'),
  config: z.unknown().optional(),
  /** Istio's pluginName: the root_id the plugin's SDK selects its root context by (`plugin_root_id`); "" when absent, as in Istio. */
  pluginName: z.string().max(256).optional(),
  vmConfig: z.strictObject({ env: z.record(z.string(), z.string()).default({}) }).optional(),
  limits: z.strictObject({ cpuMs: z.number().positive().default(50), memoryMb: z.number().positive().default(64) }).optional(),
  /** proxy-wasm (a core module) or component (a weft:filter/http-filter component); read from a file:// module's preamble when absent. */
  kind: z.enum(['proxy-wasm', 'component']).optional(),
});

const stringMatchList = z.array(z.string());

export const policyRuleSchema = z.strictObject({
  from: z
    .array(
      z.strictObject({
        source: z.strictObject({
          principals: stringMatchList.optional(),
          notPrincipals: stringMatchList.optional(),
          namespaces: stringMatchList.optional(),
          notNamespaces: stringMatchList.optional(),
          ipBlocks: stringMatchList.optional(),
          notIpBlocks: stringMatchList.optional(),
        }),
      }),
    )
    .optional(),
  to: z
    .array(
      z.strictObject({
        operation: z.strictObject({
          ports: z.array(z.union([port, z.string()])).optional(),
          notPorts: z.array(z.union([port, z.string()])).optional(),
          hosts: stringMatchList.optional(),
          notHosts: stringMatchList.optional(),
          methods: stringMatchList.optional(),
          notMethods: stringMatchList.optional(),
          paths: stringMatchList.optional(),
          notPaths: stringMatchList.optional(),
        }),
      }),
    )
    .optional(),
  when: z.array(z.strictObject({ key: z.string(), values: stringMatchList.optional(), notValues: stringMatchList.optional() })).optional(),
});

export const policySchema = z.strictObject({
  name,
  namespace: name.default('default'),
  action: z.enum(['ALLOW', 'DENY']).default('ALLOW'),
  selector: z.strictObject({ matchLabels: labels }).optional(),
  targetRef: z.strictObject({ kind: z.enum(['Service', 'Workload']), name }).optional(),
  rules: z.array(policyRuleSchema).default([]),
});

export const localPortSchema = z.strictObject({
  listen: socketAddress,
  /** `name.namespace`, `name.namespace.svc.cluster.local` or a VIP. */
  service: z.string().min(1),
  port,
});

export const limitsSchema = z.strictObject({
  connectTimeoutMs: z.number().int().positive().default(DEFAULT_CONNECT_TIMEOUT_MS),
  idleTimeoutMs: z.number().int().min(0).default(DEFAULT_IDLE_TIMEOUT_MS),
  maxConnections: z.number().int().positive().default(DEFAULT_MAX_CONNECTIONS),
  drainDeadlineMs: z.number().int().min(0).default(DEFAULT_DRAIN_DEADLINE_MS),
});

/** Workload certificates: the built-in CA (root from files or a state directory) or an Istio CA (`caAddress`). */
export const identitySchema = z.strictObject({
  /** Directory where the built-in CA keeps root-cert.pem/root-key.pem (generated on first start). */
  caDir: z.string().optional(),
  rootCertFile: z.string().optional(),
  rootKeyFile: z.string().optional(),
  /** `host:port` of an IstioCertificateService (istiod :15012); absent means the built-in CA. */
  caAddress: z.string().optional(),
  /** PEM root that signs the external CA's serving certificate; absent means plaintext gRPC (tests only). */
  caRootCertFile: z.string().optional(),
  /** Bearer token file sent to the external CA (a projected token with audience istio-ca). */
  caTokenFile: z.string().optional(),
  clusterId: z.string().optional(),
  /** Istio SECRET_TTL: 24 h. */
  certTtlSeconds: z.number().int().min(1).default(DEFAULT_CERT_TTL_SECONDS),
});

/** Istio PeerAuthentication: mesh-wide (no namespace), per namespace, or per workload selector; the most specific wins. */
export const peerAuthenticationSchema = z.strictObject({
  name: name.optional(),
  namespace: name.optional(),
  selector: z.strictObject({ matchLabels: labels }).optional(),
  mode: z.enum(['STRICT', 'PERMISSIVE']).default('PERMISSIVE'),
});

/** HBONE tunnel settings; defaults are ztunnel's (src/config.rs). */
export const hboneSchema = z.strictObject({
  /** Port peers accept HBONE on (`podIP:15008`). */
  port: port.default(DEFAULT_PORTS.hbone),
  maxStreamsPerConnection: z.number().int().min(1).max(1000).default(HBONE_DEFAULTS.maxStreamsPerConnection),
  poolIdleTimeoutMs: z.number().int().min(0).default(HBONE_DEFAULTS.poolIdleTimeoutMs),
  streamWindowBytes: z.number().int().min(65_535).max(2 ** 31 - 1).default(HBONE_DEFAULTS.streamWindowBytes),
  connectionWindowBytes: z.number().int().min(65_535).max(2 ** 31 - 1).default(HBONE_DEFAULTS.connectionWindowBytes),
  maxFrameBytes: z.number().int().min(16_384).max(16_777_215).default(HBONE_DEFAULTS.maxFrameBytes),
});

const WORKERS_MESSAGE = 'expected "auto" or a whole number of event loops, 1 or more (e.g. workers: 2)';

export const configSchema = z.strictObject({
  node: z.string().min(1).default('node-local'),
  trustDomain: z.string().min(1).default(DEFAULT_TRUST_DOMAIN),
  /** Where workloads, services, plugins and policies come from: this file, or the Kubernetes API server (runtime/kubernetes/). */
  source: z.enum(['file', 'kubernetes']).default('file'),
  /**
   * Event loops, each accepting on its own SO_REUSEPORT sockets (runtime/workers/README.md): `auto` is the cores the
   * process may use (its CPU affinity); a number above them is accepted with a warning.
   */
  workers: z.union([z.literal('auto'), z.number().int().min(1, { error: WORKERS_MESSAGE })], { error: WORKERS_MESSAGE }).default(1),
  state: stateSchema.default({ backend: 'memory' }),
  listeners: listenersSchema.default({}),
  limits: limitsSchema.default(limitsSchema.parse({})),
  /**
   * Connect to destinations from the client's own IP (IP_TRANSPARENT) for captured connections, so pods see their
   * peers' addresses instead of weft's. Needs CAP_NET_ADMIN and the cni/ rules that route replies back to weft.
   */
  preserveSourceIp: z.boolean().default(false),
  accessLog: z.strictObject({ enabled: z.boolean().default(true), path: z.string().optional() }).default({ enabled: true }),
  localPorts: z.array(localPortSchema).default([]),
  namespaces: z.array(namespaceSchema).default([]),
  workloads: z.array(workloadSchema).default([]),
  services: z.array(serviceSchema).default([]),
  plugins: z.array(pluginSchema).default([]),
  policies: z.array(policySchema).default([]),
  rateLimits: z.array(rateLimitDomainSchema).default([]),
  circuitBreakers: circuitBreakersSchema.default(circuitBreakersSchema.parse({})),
  /** L7 routing per service (VirtualService spirit); attaching one makes the service L7. */
  routes: z.array(serviceRoutesSchema).default([]),
  /** Connection pool, circuit breakers, outlier detection, load balancing per service (DestinationRule spirit). */
  trafficPolicies: z.array(trafficPolicySchema).default([]),
  l7: l7LimitsSchema.default(l7LimitsSchema.parse({})),
  identity: identitySchema.default(identitySchema.parse({})),
  peerAuthentication: z.array(peerAuthenticationSchema).default([]),
  hbone: hboneSchema.default(hboneSchema.parse({})),
  dns: dnsSchema.default(dnsSchema.parse({})),
  /**
   * In-pod capture (cni/ `mode: inpod`): the node agent's ZDS socket. Each enrolled pod's namespace gets weft's listeners
   * (15001, 15006, hbone.port); `mark` is the SO_MARK of weft's sockets there, which the pod's rules leave alone.
   */
  inpod: z.strictObject({ socket: z.string().min(1), mark: z.number().int().min(1).max(0xfff).default(0x539) }).optional(),
  /** Serverless wasi:http components, each a mesh service `<name>.<namespace>` on port 80 (runtime/functions). */
  functions: z.array(functionSchema).default([]),
});

export type WeftConfig = z.infer<typeof configSchema>;
export type WorkloadConfig = z.infer<typeof workloadSchema>;
export type ServiceConfig = z.infer<typeof serviceSchema>;
export type ServicePortConfig = z.infer<typeof servicePortSchema>;
export type NamespaceConfig = z.infer<typeof namespaceSchema>;
export type PluginConfig = z.infer<typeof pluginSchema>;
export type PolicyConfig = z.infer<typeof policySchema>;
export type PolicyRuleConfig = z.infer<typeof policyRuleSchema>;
export type LocalPortConfig = z.infer<typeof localPortSchema>;
export type ListenerConfig = z.infer<typeof listener>;
export type LimitsConfig = z.infer<typeof limitsSchema>;
export type IdentityConfig = z.infer<typeof identitySchema>;
export type PeerAuthenticationConfig = z.infer<typeof peerAuthenticationSchema>;
export type HboneConfig = z.infer<typeof hboneSchema>;
export type InpodConfig = NonNullable<WeftConfig['inpod']>;
export type StateConfig = z.infer<typeof stateSchema>;
export type RedisConfig = z.infer<typeof redisSchema>;
export type RateLimitRuleConfig = z.infer<typeof rateLimitRuleSchema>;
export type RateLimitDomainConfig = z.infer<typeof rateLimitDomainSchema>;
export type CircuitBreakerSettings = z.infer<typeof circuitBreakerSettingsSchema>;
export type CircuitBreakersConfig = z.infer<typeof circuitBreakersSchema>;
