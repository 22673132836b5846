/** W3C Trace Context: continues an incoming `traceparent` with a new span id for this hop, or starts a trace when it is absent or invalid. */
import { randomFillSync } from 'node:crypto';

/**
 * Random bytes are drawn in blocks and hex-encoded once per block: one getrandom and one encoding per 512 ids instead
 * of one per request; an id is then a substring of the block's hex (V8 shares the characters, no copy).
 */
const POOL = Buffer.alloc(8 * 1024);
let poolHex = '';
let hexOffset = 0;

function randomHex(bytes: number): string {
  const chars = bytes * 2;
  if (hexOffset + chars > poolHex.length) {
    randomFillSync(POOL);
    poolHex = POOL.toString('hex');
    hexOffset = 0;
  }
  const s = poolHex.substring(hexOffset, hexOffset + chars);
  hexOffset += chars;
  return s;
}

const TRACEPARENT_RE = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;
const ZERO_TRACE = '0'.repeat(32);
const ZERO_SPAN = '0'.repeat(16);

export interface TraceContext {
  traceId: string;
  spanId: string;
  /** The caller's span, when the request carried one. */
  parentSpanId: string | undefined;
  flags: string;
  /** The header value to send upstream. */
  header: string;
}

/** Version 00 only (W3C §3.2.4: unknown versions are parsed like 00 when well formed; weft restarts the trace instead). */
export function continueTrace(incoming: string | undefined): TraceContext {
  const spanId = randomHex(8);
  if (incoming !== undefined) {
    const m = TRACEPARENT_RE.exec(incoming);
    if (m !== null && m[1] !== ZERO_TRACE && m[2] !== ZERO_SPAN) {
      return { traceId: m[1]!, spanId, parentSpanId: m[2]!, flags: m[3]!, header: `00-${m[1]!}-${spanId}-${m[3]!}` };
    }
  }
  const traceId = randomHex(16);
  return { traceId, spanId, parentSpanId: undefined, flags: '01', header: `00-${traceId}-${spanId}-01` };
}

/** A request id for the access log and `x-request-id` when the client sent none. */
export function newRequestId(): string {
  return randomHex(16);
}
