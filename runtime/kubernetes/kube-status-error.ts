/** A failed API call, classified by HTTP status and the Status object's reason (never by message text), with Retry-After when the server sent one. */
import type { KubeErrorReason } from './kube-metrics.js';
import { decodeStatus, isProtobuf } from './kube-protobuf.js';

export class KubeStatusError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
    /** Retry-After in milliseconds (429, 503), as the server asked. */
    readonly retryAfterMs: number | undefined = undefined,
  ) {
    super(message);
    this.name = 'KubeStatusError';
  }

  /** Reads a non-2xx answer's Status body (kind: Status, JSON or protobuf as negotiated) and its Retry-After header. */
  static async fromResponse(res: { statusCode: number; headers: Record<string, string | string[] | undefined>; body: { arrayBuffer(): Promise<ArrayBuffer> } }, what: string): Promise<KubeStatusError> {
    const bytes = Buffer.from(await res.body.arrayBuffer().catch(() => new ArrayBuffer(0)));
    let reason = '';
    let message = bytes.toString('utf8', 0, 300);
    try {
      const status = isProtobuf(res.headers) ? decodeStatus(bytes, what) : (JSON.parse(bytes.toString('utf8')) as { reason?: string; message?: string });
      reason = status.reason ?? '';
      message = status.message ?? message;
    } catch {
      // Not a Status object (a proxy in between); the code alone classifies it.
    }
    const header = res.headers['retry-after'];
    const seconds = Number(Array.isArray(header) ? header[0] : header);
    return new KubeStatusError(res.statusCode, reason, `${what}: ${res.statusCode} ${reason} ${message}`.trim(), Number.isFinite(seconds) && header !== undefined ? seconds * 1000 : undefined);
  }
}

/** The watch stream went silent for longer than the inactivity limit (a half-open connection). */
export class WatchStalledError extends Error {
  override readonly name = 'WatchStalledError';
}

export function errorReason(err: unknown): KubeErrorReason {
  if (err instanceof WatchStalledError) return 'stalled';
  if (err instanceof KubeStatusError) {
    if (err.code === 410) return 'gone';
    if (err.code === 401) return 'unauthorized';
    if (err.code === 403) return 'forbidden';
    if (err.code === 404) return 'absent';
    if (err.code === 429) return 'throttled';
    if (err.code >= 500) return 'server';
    return 'other';
  }
  if (err instanceof SyntaxError) return 'decode';
  return 'network';
}
