/** Envoy retry semantics shared by HTTP/1 and h2c: which outcomes a route retries (retry_on), when the limit is reached, the jittered backoff, and a request's slot in the cluster's retry budget. */
import type { RetryPolicy } from './route-table.js';
import type { UpstreamCluster } from './upstream-cluster.js';

/** `refused-stream`: the upstream refused an HTTP/2 stream (REFUSED_STREAM, or a session going away) before processing it. */
export type AttemptFailure = 'connect-failure' | 'reset' | 'timeout' | 'refused-stream';

/** Request bodies up to this size are kept so the request can be retried (or mirrored). */
export const RETRY_BUFFER_BYTES = 64 * 1024;

/** Whether the policy retries on a gRPC status (then a gRPC response is held until its status is known or data flows). */
export function retriesGrpcStatus(r: RetryPolicy): boolean {
  return r.on.has('cancelled') || r.on.has('deadline-exceeded') || r.on.has('resource-exhausted') || r.on.has('unavailable');
}

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

/** Whether a failed attempt (no usable answer) is one the policy retries; 5xx and gateway-error cover resets, refused streams and timeouts, as in Envoy. */
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

/**
 * What to do with an upstream answer: 'retry' when the policy retries it and the request can go again
 * (`replayable`: nothing reached the client yet and the whole request is at hand), 'exhausted' when the retries are
 * used up (forward the answer, flagged URX as Envoy does), 'no' otherwise.
 */
export function answerVerdict(r: RetryPolicy | undefined, status: number, grpcStatus: string, attempts: number, replayable: boolean): 'retry' | 'exhausted' | 'no' {
  if (r === undefined || !isRetriableAnswer(r, status, grpcStatus)) return 'no';
  if (attempts > r.attempts) return 'exhausted';
  return replayable ? 'retry' : 'no';
}

/** The cluster side of Envoy's retry budget for one request: a retry stays active until the retried request ends, and an exchange holds at most one slot. */
export class RetrySlot {
  #cluster: UpstreamCluster | undefined;

  /** Takes a slot for the next retry on `cluster`, giving back the one held; false when max_retries or the budget is full. */
  take(cluster: UpstreamCluster, r: RetryPolicy): boolean {
    this.release();
    if (!cluster.tryStartRetry(r.budgetPercent, r.minRetryConcurrency)) return false;
    this.#cluster = cluster;
    return true;
  }

  release(): void {
    this.#cluster?.endRetry();
    this.#cluster = undefined;
  }
}
