/** The L7 sections of weft.yaml (`routes:`, `trafficPolicies:`, `l7:`), in the spirit of Istio's VirtualService and DestinationRule; shapes only, cross-references live in config-validate. */
import { z } from 'zod';
import { CONNECTION_POOL_DEFAULTS as POOL, L7_LIMITS_DEFAULTS as L7 } from './defaults.js';

const port = z.number().int().min(1).max(65535);
const labels = z.record(z.string(), z.string());

/** Istio StringMatch: exactly one of exact, prefix or regex (RE2-like; compiled with the `u` flag). */
export const stringMatchSchema = z
  .strictObject({ exact: z.string().optional(), prefix: z.string().optional(), regex: z.string().optional(), present: z.boolean().optional() })
  .refine((m) => [m.exact, m.prefix, m.regex, m.present].filter((v) => v !== undefined).length === 1, {
    message: 'set exactly one of exact, prefix, regex, present',
  })
  .refine((m) => m.regex === undefined || isValidRegex(m.regex), { message: 'not a valid regular expression' });

function isValidRegex(source: string): boolean {
  try {
    new RegExp(source, 'u');
    return true;
  } catch {
    return false;
  }
}

export const routeMatchSchema = z.strictObject({
  path: stringMatchSchema.optional(),
  method: z.string().regex(/^[A-Z]+$/, 'expected an upper-case HTTP method').optional(),
  headers: z.record(z.string(), stringMatchSchema).optional(),
});

export const headerOpsSchema = z.strictObject({
  set: z.record(z.string(), z.string()).optional(),
  add: z.record(z.string(), z.string()).optional(),
  remove: z.array(z.string()).optional(),
});

export const routeBackendSchema = z.strictObject({
  /** Another service (`name.namespace`); defaults to the route's host. */
  service: z.string().optional(),
  /** Subset of the service's endpoints by workload labels. */
  labels: labels.optional(),
  port: port.optional(),
  weight: z.number().int().min(0).default(1),
});

export const retryOnValues = ['5xx', 'gateway-error', 'reset', 'connect-failure', 'retriable-4xx', 'refused-stream', 'retriable-status-codes', 'cancelled', 'deadline-exceeded', 'resource-exhausted', 'unavailable'] as const;

export const retriesSchema = z.strictObject({
  attempts: z.number().int().min(0).max(10).default(2),
  perTryTimeoutMs: z.number().int().positive().optional(),
  /** Envoy `retry_on` conditions, comma separated or a list; Istio's default is `connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes`. */
  retryOn: z.union([z.string(), z.array(z.string())]).default('connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes'),
  retriableStatusCodes: z.array(z.number().int().min(100).max(599)).default([503]),
  /** Envoy retry budget: retries allowed in flight as a percentage of active requests, with a floor. */
  budgetPercent: z.number().min(0).max(100).default(20),
  minRetryConcurrency: z.number().int().min(0).default(3),
  backoffBaseMs: z.number().int().min(0).default(25),
});

export const loadBalancerSchema = z.strictObject({
  kind: z.enum(['ROUND_ROBIN', 'LEAST_REQUEST', 'RANDOM', 'CONSISTENT_HASH']).default('ROUND_ROBIN'),
  hashOn: z
    .strictObject({ header: z.string().optional(), cookie: z.string().optional(), sourceIp: z.boolean().optional() })
    .refine((h) => [h.header, h.cookie, h.sourceIp].filter((v) => v !== undefined && v !== false).length === 1, { message: 'hash on exactly one of header, cookie, sourceIp' })
    .optional(),
  /** Ring points per endpoint (ketama-style): a fixed count per endpoint, so removing one moves only the keys it owned. */
  ringSize: z.number().int().min(16).max(4096).default(160),
});

export const httpRouteSchema = z.strictObject({
  name: z.string().optional(),
  /** All listed matches are alternatives (OR); within one match every field must hold (AND). Empty matches all. */
  match: z.array(routeMatchSchema).default([]),
  backends: z.array(routeBackendSchema).default([]),
  rewrite: z.strictObject({ uri: z.string().optional(), uriRegex: z.strictObject({ match: z.string(), rewrite: z.string() }).optional(), authority: z.string().optional() }).optional(),
  headers: z.strictObject({ request: headerOpsSchema.optional(), response: headerOpsSchema.optional() }).optional(),
  mirror: z.strictObject({ service: z.string().optional(), labels: labels.optional(), port: port.optional(), percent: z.number().min(0).max(100).default(100) }).optional(),
  timeoutMs: z.number().int().min(0).optional(),
  retries: retriesSchema.optional(),
  loadBalancer: loadBalancerSchema.optional(),
  /** CONNECT requests that match may tunnel to the backend (Envoy's upgrade_configs CONNECT); without it they get 405. */
  connect: z.boolean().default(false),
});

export const serviceRoutesSchema = z.strictObject({
  /** The service these routes apply to: `name.namespace`, its hostname, or a VIP. */
  host: z.string().min(1),
  /** Limit to one service port; all ports when absent. */
  port: port.optional(),
  http: z.array(httpRouteSchema).min(1),
});

export const connectionPoolSchema = z.strictObject({
  maxConnections: z.number().int().positive().default(POOL.maxConnections),
  maxPendingRequests: z.number().int().min(0).default(POOL.maxPendingRequests),
  maxRequests: z.number().int().positive().default(POOL.maxRequests),
  maxRetries: z.number().int().min(0).default(POOL.maxRetries),
  connectTimeoutMs: z.number().int().positive().default(POOL.connectTimeoutMs),
  idleTimeoutMs: z.number().int().positive().default(POOL.idleTimeoutMs),
  maxRequestsPerConnection: z.number().int().min(0).default(POOL.maxRequestsPerConnection),
});

export const outlierDetectionSchema = z.strictObject({
  consecutive5xxErrors: z.number().int().min(0).default(5),
  consecutiveGatewayErrors: z.number().int().min(0).default(0),
  consecutiveLocalOriginFailures: z.number().int().min(0).default(5),
  intervalMs: z.number().int().positive().default(10_000),
  baseEjectionTimeMs: z.number().int().positive().default(30_000),
  maxEjectionTimeMs: z.number().int().positive().default(300_000),
  maxEjectionPercent: z.number().min(0).max(100).default(10),
});

export const trafficPolicySchema = z.strictObject({
  host: z.string().min(1),
  port: port.optional(),
  loadBalancer: loadBalancerSchema.optional(),
  connectionPool: connectionPoolSchema.optional(),
  outlierDetection: outlierDetectionSchema.optional(),
});

export const l7LimitsSchema = z.strictObject({
  /** Envoy max_request_headers_kb defaults to 60 KiB; beyond it 431. */
  maxRequestHeadersBytes: z.number().int().min(1024).default(L7.maxRequestHeadersBytes),
  /** Envoy max_headers_count defaults to 100; beyond it 431. */
  maxHeaders: z.number().int().min(8).default(L7.maxHeaders),
  /** Time allowed for a complete request head once its first byte arrived; beyond it 408. */
  headersTimeoutMs: z.number().int().positive().default(L7.headersTimeoutMs),
  /** A keep-alive connection with no request in flight is closed after this. */
  idleTimeoutMs: z.number().int().positive().default(L7.idleTimeoutMs),
  /** Bound on a body a filter asked to buffer: 413 for requests, 500 for responses beyond it. */
  maxBufferedBodyBytes: z.number().int().positive().default(L7.maxBufferedBodyBytes),
  /** HTTP/2: streams reset by the client per second before the session is closed with GOAWAY (CVE-2023-44487). */
  h2MaxResetsPerSecond: z.number().int().positive().default(L7.h2MaxResetsPerSecond),
  h2MaxConcurrentStreams: z.number().int().positive().default(L7.h2MaxConcurrentStreams),
});

export type StringMatchConfig = z.infer<typeof stringMatchSchema>;
export type RouteMatchConfig = z.infer<typeof routeMatchSchema>;
export type HeaderOpsConfig = z.infer<typeof headerOpsSchema>;
export type RouteBackendConfig = z.infer<typeof routeBackendSchema>;
export type RetriesConfig = z.infer<typeof retriesSchema>;
export type LoadBalancerConfig = z.infer<typeof loadBalancerSchema>;
export type HttpRouteConfig = z.infer<typeof httpRouteSchema>;
export type ServiceRoutesConfig = z.infer<typeof serviceRoutesSchema>;
export type ConnectionPoolConfig = z.infer<typeof connectionPoolSchema>;
export type OutlierDetectionConfig = z.infer<typeof outlierDetectionSchema>;
export type TrafficPolicyConfig = z.infer<typeof trafficPolicySchema>;
export type L7LimitsConfig = z.infer<typeof l7LimitsSchema>;
