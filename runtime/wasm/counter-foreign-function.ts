/**
 * `weft.counter.add`: a cluster-wide windowed counter for plugins ("logins of this user in the last minute across every
 * node"), kept in the shared-state backend (memory or Redis) as a fixed window with an unreachable limit. The answer
 * always arrives through proxy_on_foreign_function (the backend is asynchronous). JSON payloads:
 *
 *   in:  {"id"?: n, "name": "logins:alice", "delta": 1, "windowMs": 60000}
 *   out: {"id", "context", "value": <count in the current window after adding>, "resetMs": <ms until it restarts>}
 *        or {"id", "context", "error": "<why>", "code"}: bad input at once, a backend failure later — never an
 *        empty payload, so the SDK can route the failure to the one call it belongs to.
 *
 * Counters are namespaced by plugin name, so two plugins never share one by accident.
 */
import type { LimitSpec, StateBackend } from '../shared-state/state-backend.js';
import { escapeIdPart } from '../shared-state/state-backend.js';
import type { ForeignCallContext, ForeignFunctionRegistry } from './foreign-function.js';

export const COUNTER_ADD_FUNCTION = 'weft.counter.add';

/** Far above any real count, below 2^53 so Lua's doubles stay exact. */
const UNREACHABLE_LIMIT = 2 ** 50;
const MAX_DELTA = 1_000_000_000;
const MIN_WINDOW_MS = 1000;
const MAX_WINDOW_MS = 86_400_000;
const MAX_NAME_LENGTH = 256;

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });
const answer = (value: unknown): Uint8Array => encoder.encode(JSON.stringify(value));

interface CounterRequest {
  id: unknown;
  name: string;
  delta: number;
  windowMs: number;
}

function parse(args: Uint8Array): CounterRequest | string {
  let p: Record<string, unknown>;
  try {
    p = JSON.parse(decoder.decode(args)) as Record<string, unknown>;
  } catch {
    return 'payload is not UTF-8 JSON';
  }
  if (typeof p !== 'object' || p === null || Array.isArray(p)) return 'payload must be a JSON object';
  if (typeof p.name !== 'string' || p.name === '' || p.name.length > MAX_NAME_LENGTH) return `"name" must be a string of 1..${MAX_NAME_LENGTH} characters`;
  const delta = p.delta ?? 1;
  if (typeof delta !== 'number' || !Number.isInteger(delta) || delta < 0 || delta > MAX_DELTA) return `"delta" must be an integer 0..${MAX_DELTA}`;
  if (typeof p.windowMs !== 'number' || !Number.isInteger(p.windowMs) || p.windowMs < MIN_WINDOW_MS || p.windowMs > MAX_WINDOW_MS) {
    return `"windowMs" must be an integer ${MIN_WINDOW_MS}..${MAX_WINDOW_MS}`;
  }
  return { id: p.id ?? null, name: p.name, delta, windowMs: p.windowMs };
}

export function counterSpec(plugin: string, name: string, windowMs: number): LimitSpec {
  return { id: `counter|${escapeIdPart(plugin)}|${escapeIdPart(name)}|${windowMs}`, algorithm: 'fixed', limit: UNREACHABLE_LIMIT, windowMs, burst: UNREACHABLE_LIMIT };
}

/** Registers weft.counter.add over `backend`; answers its function id. */
export function registerCounterForeignFunction(registry: ForeignFunctionRegistry, backend: StateBackend): number {
  return registry.register(COUNTER_ADD_FUNCTION, (args: Uint8Array, ctx: ForeignCallContext) => {
    const req = parse(args);
    if (typeof req === 'string') return answer({ error: req, code: 'WEFT_ERR_BAD_REQUEST' });
    const spec = counterSpec(ctx.pluginName, req.name, req.windowMs);
    return backend.consume(spec, req.delta).then(
      (r) => answer({ id: req.id, context: ctx.contextId, value: UNREACHABLE_LIMIT - r.remaining, resetMs: Math.ceil(r.resetMs) }),
      (err: unknown) => answer({ id: req.id, context: ctx.contextId, error: `counter backend failed: ${err instanceof Error ? err.message : String(err)}`, code: 'WEFT_ERR_STATE_BACKEND' }),
    );
  });
}
