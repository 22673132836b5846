/** Fixed-window counting aligned to the backend's clock: exact per window, denials never counted; TypeScript for memory, Lua for Redis. */
import { GRANT_LUA } from './grant-lua.js';
import { grant } from './gcra.js';
import type { ConsumeResult } from './state-backend.js';

export interface WindowCount {
  /** Window index: floor(now / window). */
  readonly window: number;
  readonly count: number;
}

export interface FixedWindowOutcome {
  readonly write: WindowCount | undefined;
  readonly result: ConsumeResult;
}

/** A decision's numbers, written in place by fixedWindowDecideInto (the memory backend keeps one and reuses it). */
export interface FixedWindowScratch {
  allowed: boolean;
  granted: number;
  remaining: number;
  resetMs: number;
  retryAfterMs: number;
  /** The window decided in, and the count to store there when `granted` > 0 (denials never write). */
  window: number;
  count: number;
}

export const newFixedWindowScratch = (): FixedWindowScratch => ({ allowed: false, granted: 0, remaining: 0, resetMs: 0, retryAfterMs: 0, window: 0, count: 0 });

/**
 * Pure decision into `out`, no allocation; times in microseconds. `storedWindow`/`storedCount` are the stored counter
 * (storedWindow NaN when there is none). Unlike envoyproxy/ratelimit, rejected hits do not grow the counter.
 */
export function fixedWindowDecideInto(
  storedWindow: number, storedCount: number, nowUs: number, windowUs: number, limit: number, hits: number, minGrant: number, out: FixedWindowScratch,
): void {
  const window = Math.floor(nowUs / windowUs);
  const count = storedWindow === window ? storedCount : 0;
  const available = Math.max(0, limit - count);
  const granted = grant(hits, available, minGrant);
  const allowed = granted > 0 || hits === 0;
  const resetMs = Math.ceil((window + 1) * windowUs - nowUs) / 1000;
  out.allowed = allowed;
  out.granted = granted;
  out.remaining = Math.max(0, limit - count - granted);
  out.resetMs = resetMs;
  out.retryAfterMs = allowed ? 0 : resetMs;
  out.window = window;
  out.count = count + granted;
}

/** fixedWindowDecideInto as a value: what to store (undefined: nothing) and the result. */
export function fixedWindowDecide(stored: WindowCount | undefined, nowUs: number, windowUs: number, limit: number, hits: number, minGrant: number): FixedWindowOutcome {
  const o = newFixedWindowScratch();
  fixedWindowDecideInto(stored?.window ?? Number.NaN, stored?.count ?? 0, nowUs, windowUs, limit, hits, minGrant, o);
  return {
    write: o.granted > 0 ? { window: o.window, count: o.count } : undefined,
    result: { allowed: o.allowed, granted: o.granted, remaining: o.remaining, resetMs: o.resetMs, retryAfterMs: o.retryAfterMs },
  };
}

/**
 * Redis side: one HASH {w, c} per counter so the key name does not depend on the clock (the window index is
 * derived from TIME inside the script and the key is known up front, as Redis Cluster requires).
 * KEYS[1] = counter; ARGV = window_us, limit, hits, min_grant (0 = all or nothing), deadline_us (0 = none).
 * Returns {allowed (1, 0, -1 = expired), granted, remaining, reset_us, retry_us, now_us}.
 */
export const FIXED_WINDOW_LUA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local deadline = tonumber(ARGV[5])
if deadline > 0 and now > deadline then return {-1, 0, 0, 0, 0, now} end
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local hits = tonumber(ARGV[3])
local w = math.floor(now / window)
local cur = redis.call('HMGET', KEYS[1], 'w', 'c')
local count = 0
if tonumber(cur[1]) == w then count = tonumber(cur[2]) or 0 end
local avail = limit - count
if avail < 0 then avail = 0 end
${GRANT_LUA}local reset = (w + 1) * window - now
if granted > 0 then
  redis.call('HSET', KEYS[1], 'w', string.format('%d', w), 'c', count + granted)
  redis.call('PEXPIRE', KEYS[1], math.ceil(reset / 1000) + 1)
end
local retry = 0
if allowed == 0 then retry = reset end
local remaining = limit - count - granted
if remaining < 0 then remaining = 0 end
return {allowed, granted, remaining, math.ceil(reset), math.ceil(retry), now}
`;
