/** The one error base of weft: a stable code per failure kind plus the cause; classification walks causes, never message text. */

export const ERROR_CODES = [
  'WEFT_ERR_CONFIG_INVALID',
  'WEFT_ERR_CONFIG_READ',
  'WEFT_ERR_LISTEN',
  'WEFT_ERR_UPSTREAM_CONNECT',
  'WEFT_ERR_UPSTREAM_TIMEOUT',
  'WEFT_ERR_NO_HEALTHY_UPSTREAM',
  'WEFT_ERR_UNKNOWN_SERVICE',
  'WEFT_ERR_SELF_CALL',
  'WEFT_ERR_CONNECTION_LIMIT',
  'WEFT_ERR_BAD_REQUEST',
  'WEFT_ERR_POLICY_DENIED',
  'WEFT_ERR_NATIVE_UNAVAILABLE',
  'WEFT_ERR_PLUGIN_LOAD',
  'WEFT_ERR_PLUGIN_FAILED',
  'WEFT_ERR_PLUGIN_BUILD',
  'WEFT_ERR_STATE_BACKEND',
  'WEFT_ERR_RATE_LIMITED',
  'WEFT_ERR_CIRCUIT_OPEN',
  'WEFT_ERR_TLS',
  'WEFT_ERR_IDENTITY',
  'WEFT_ERR_CNI',
  'WEFT_ERR_ZDS',
  'WEFT_ERR_INTERNAL',
  'WEFT_ERR_WORKER',
  'WEFT_ERR_FN_LOAD',
  'WEFT_ERR_FN_OVERLOADED',
  'WEFT_ERR_FN_TIMEOUT',
  'WEFT_ERR_FN_CPU',
  'WEFT_ERR_FN_MEMORY',
  'WEFT_ERR_FN_TRAP',
  'WEFT_ERR_FN_OUTBOUND_DENIED',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export class WeftError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = 'WeftError';
  }
}

/** Walks the `cause` chain; true when any link is a WeftError with `code`. */
export function isCausedBy(err: unknown, code: ErrorCode): boolean {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 16; e = e.cause, depth++) {
    if (e instanceof WeftError && e.code === code) return true;
  }
  return false;
}

/** The nearest WeftError in the cause chain, if any. */
export function weftErrorOf(err: unknown): WeftError | undefined {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 16; e = e.cause, depth++) {
    if (e instanceof WeftError) return e;
  }
  return undefined;
}

/** The errno-style code of a Node system error (ECONNREFUSED, ETIMEDOUT, ...), if it is one. */
export function systemErrorCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}
