/** GCRA (generic cell rate algorithm, as in redis-cell and go-redis/redis_rate): one theoretical arrival time per key, in TypeScript for the memory backend and in Lua for Redis. */
import { GRANT_LUA } from './grant-lua.js';
import type { ConsumeResult, LimitSpec } from './state-backend.js';

/** Emission interval T and burst offset T·burst, in microseconds. */
export interface GcraParams {
  readonly emissionUs: number;
  readonly burstOffsetUs: number;
}

export function gcraParams(spec: LimitSpec): GcraParams {
  const emissionUs = (spec.windowMs * 1000) / spec.limit;
  return { emissionUs, burstOffsetUs: emissionUs * spec.burst };
}

/** Floating sums of T drift by ulps; without the nudge 10 tokens read back as 9.999999 and floor to 9. */
const EPSILON = 1e-9;

export interface GcraOutcome {
  /** The new theoretical arrival time to store, or undefined when nothing was granted (denials never write). */
  readonly tat: number | undefined;
  readonly result: ConsumeResult;
}

/** minGrant 0: all `hits` or nothing (strict). minGrant > 0: min(hits, available), but nothing below minGrant (leases). */
export function grant(hits: number, available: number, minGrant: number): number {
  if (minGrant <= 0) return hits > available ? 0 : hits;
  const g = Math.min(hits, available);
  return g < minGrant ? 0 : g;
}

/** Pure decision; `tat` and `nowUs` in microseconds on the backend's one clock. */
export function gcraDecide(storedTat: number | undefined, nowUs: number, p: GcraParams, hits: number, minGrant: number): GcraOutcome {
  const tat = storedTat === undefined || storedTat < nowUs ? nowUs : storedTat;
  const available = Math.max(0, Math.floor((nowUs + p.burstOffsetUs - tat) / p.emissionUs + EPSILON));
  const granted = grant(hits, available, minGrant);
  const allowed = granted > 0 || hits === 0;
  const newTat = tat + granted * p.emissionUs;
  const remaining = Math.max(0, Math.floor((nowUs + p.burstOffsetUs - newTat) / p.emissionUs + EPSILON));
  const retryUs = allowed ? 0 : tat + (minGrant > 0 ? minGrant : hits) * p.emissionUs - p.burstOffsetUs - nowUs;
  return {
    tat: granted > 0 ? newTat : undefined,
    result: { allowed, granted, remaining, resetMs: Math.ceil(newTat - nowUs) / 1000, retryAfterMs: Math.max(0, Math.ceil(retryUs)) / 1000 },
  };
}

/**
 * The same decision inside Redis, on Redis's clock (TIME), atomically. KEYS[1] = bucket; ARGV = emission_us,
 * burst_offset_us, hits, min_grant (0 = all or nothing), deadline_us (0 = none: a decision executed after it counts nothing,
 * so commands a paused Redis runs late never add hits the caller already gave up on).
 * Returns {allowed (1, 0, or -1 = expired), granted, remaining, reset_us, retry_us, now_us}.
 */
export const GCRA_LUA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local deadline = tonumber(ARGV[5])
if deadline > 0 and now > deadline then return {-1, 0, 0, 0, 0, now} end
local T = tonumber(ARGV[1])
local offset = tonumber(ARGV[2])
local hits = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then tat = now end
local avail = math.floor((now + offset - tat) / T + 1e-9)
if avail < 0 then avail = 0 end
${GRANT_LUA}local new_tat = tat + granted * T
if granted > 0 then
  redis.call('SET', KEYS[1], string.format('%.17g', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
end
local remaining = math.floor((now + offset - new_tat) / T + 1e-9)
if remaining < 0 then remaining = 0 end
local retry = 0
if allowed == 0 then
  local need = hits
  if min_grant > 0 then need = min_grant end
  retry = tat + need * T - offset - now
end
return {allowed, granted, remaining, math.ceil(new_tat - now), math.ceil(retry), now}
`;
