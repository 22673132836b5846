/** Envoy retry semantics as pure decisions: which outcomes a route retries (retry_on), when the limit is reached, and the jittered backoff. */
import type { RetryPolicy } from './route-table.js';

export type AttemptFailure = 'connect-failure' | 'reset' | 'timeout';

/** Whether an upstream answer (status, grpc-status) is one the policy retries. */
export function isRetriableAnswer(r: RetryPolicy, status: number, grpcStatus: string): boolean {
  return (
    (r.on.has('5xx') && status >= 500) ||
    (r.on.has('gateway-error') && status >= 502 && status <= 504) ||
    (r.on.has('retriable-4xx') && status === 409) ||
    (r.on.has('retriable-status-codes') && r.statusCodes.has(status)) ||
    (r.on.has('cancelled') && grpcStatus === '1') ||
    (r.on.has('deadline-exceeded') && grpcStatus === '4') ||
    (r.on.has('resource-exhausted') && grpcStatus === '8') ||
    (r.on.has('unavailable') && grpcStatus === '14')
  );
}

/** Whether a failed attempt (no usable answer) is one the policy retries; 5xx and gateway-error cover resets and timeouts, as in Envoy. */
export function isRetriableFailure(r: RetryPolicy, kind: AttemptFailure): boolean {
  if (r.on.has(kind)) return true;
  if (kind === 'connect-failure') return r.on.has('gateway-error');
  return r.on.has('5xx') || r.on.has('gateway-error');
}

/** Envoy's fully jittered exponential backoff before retry `attempt` (1-based): uniform in [0, base × (2^attempt − 1)]. */
export function backoffMs(r: RetryPolicy, attempt: number): number {
  return Math.floor(Math.random() * r.backoffBaseMs * (2 ** attempt - 1));
}

/** Methods a proxy may replay after the request reached the upstream (RFC 9110 §9.2.2). */
export const IDEMPOTENT_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);
