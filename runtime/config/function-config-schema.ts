/** The schema of `functions:` in weft.yaml: serverless wasi:http components served as mesh services (DESIGN.md "Configuration"). */
import { z } from 'zod';
import { isIP } from 'node:net';

const name = z.string().regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'expected a DNS-1123 label (lower-case letters, digits and "-")');
const labels = z.record(z.string(), z.string());

/** Defaults chosen from the anchors (../shared/reference/serverless-wasm.md §3, §5): Workers/Fastly memory, Fastly CPU, Spin reuse. */
export const FUNCTION_DEFAULTS = {
  memoryMb: 128,
  cpuMs: 50,
  timeoutMs: 30_000,
  maxInstances: 16,
  maxQueue: 100,
  queueTimeoutMs: 10_000,
  maxRequestsPerInstance: 128,
  idleTimeoutMs: 30_000,
  moduleIdleTimeoutMs: 300_000,
} as const;

export const functionLimitsSchema = z.strictObject({
  /** Linear memory cap per instance, summed over the component's core memories. */
  memoryMb: z.number().int().min(1).max(4096).default(FUNCTION_DEFAULTS.memoryMb),
  /** CPU time one request may use in the guest (time blocked on I/O does not count). */
  cpuMs: z.number().int().min(1).default(FUNCTION_DEFAULTS.cpuMs),
  /** Wall time from dispatch to the end of the response. */
  timeoutMs: z.number().int().min(1).default(FUNCTION_DEFAULTS.timeoutMs),
  /** Instances (worker threads) of this function on this node; a WASI 0.2 instance serves one request at a time. */
  maxInstances: z.number().int().min(1).max(256).default(FUNCTION_DEFAULTS.maxInstances),
  /** Requests waiting for an instance beyond maxInstances; more are answered 503. */
  maxQueue: z.number().int().min(0).default(FUNCTION_DEFAULTS.maxQueue),
  queueTimeoutMs: z.number().int().min(1).default(FUNCTION_DEFAULTS.queueTimeoutMs),
  /** Requests one instance serves before it is recycled (Spin's max-instance-reuse-count). */
  maxRequestsPerInstance: z.number().int().min(1).default(FUNCTION_DEFAULTS.maxRequestsPerInstance),
  /** An instance idle this long is dropped (scale to zero). */
  idleTimeoutMs: z.number().int().min(1).default(FUNCTION_DEFAULTS.idleTimeoutMs),
  /** With no instance for this long, the compiled module is dropped too. */
  moduleIdleTimeoutMs: z.number().int().min(1).default(FUNCTION_DEFAULTS.moduleIdleTimeoutMs),
});

/** Spin's allowed_outbound_hosts syntax: `scheme://host[:port]`, `*` wildcards for scheme, a leading host label, or port. */
const outboundHost = z.string().regex(/^(\*|https?):\/\/(\*|(\*\.)?[a-z0-9]([-a-z0-9.]*[a-z0-9])?|\[[0-9a-f:.]+\])(:(\*|\d{1,5}))?$/i, 'expected scheme://host[:port], e.g. "http://reviews.default:9080" or "https://*.example.com"');

export const functionSchema = z.strictObject({
  name,
  namespace: name.default('default'),
  url: z.string().regex(/^(file|https|oci):\/\//, 'expected a file://, https:// or oci:// URL'),
  sha256: z.string().regex(/^[0-9a-f]{64}$/, 'expected 64 lower-case hex digits').optional(),
  /** Service VIPs the function answers on (port 80), besides its name. */
  addresses: z.array(z.string().refine((s) => isIP(s) !== 0, { message: 'expected an IPv4 or IPv6 address' })).default([]),
  /** The SPIFFE identity's service account; the function's name when absent. */
  serviceAccount: name.optional(),
  labels: labels.default({}),
  /** `weft.dev/plugins` and friends, as on a service. */
  annotations: labels.default({}),
  limits: functionLimitsSchema.default(functionLimitsSchema.parse({})),
  /** `wasi:cli/environment` of the guest: only these keys (plus REQUEST_ID). */
  env: z.record(z.string(), z.string()).default({}),
  allowedOutboundHosts: z.array(outboundHost).default([]),
});

export type FunctionConfig = z.infer<typeof functionSchema>;
export type FunctionLimits = z.infer<typeof functionLimitsSchema>;
