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

/** Pure decision; times in microseconds. Unlike envoyproxy/ratelimit, rejected hits do not grow the counter. */
export function fixedWindowDecide(stored: WindowCount | undefined, nowUs: number, windowUs: number, limit: number, hits: number, minGrant: number): FixedWindowOutcome {
  const window = Math.floor(nowUs / windowUs);
  const count = stored !== undefined && stored.window === window ? stored.count : 0;
  const available = Math.max(0, limit - count);
  const granted = grant(hits, available, minGrant);
  const allowed = granted > 0 || hits === 0;
  const resetUs = (window + 1) * windowUs - nowUs;
  return {
    write: granted > 0 ? { window, count: count + granted } : undefined,
    result: {
      allowed,
      granted,
      remaining: Math.max(0, limit - count - granted),
      resetMs: Math.ceil(resetUs) / 1000,
      retryAfterMs: allowed ? 0 : Math.ceil(resetUs) / 1000,
    },
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
