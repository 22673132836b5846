/** The shared circuit breaker's Redis scripts: outcome windows, CAS-free transitions by generation, and the one cluster-wide probe slot; all keys of one breaker share a hash tag. */

/**
 * KEYS (every script): [1] state HASH {state, gen, until, ok}, [2] outcome window HASH {<bucket>:s|f -> n},
 * [3] reporting nodes HASH {node -> last failure ms}, [4] probe slot STRING (owner, PX ttl).
 * Times are Redis TIME in ms. Transitions PUBLISH "<state>|<gen>|<open remaining ms>|<name>" on the events channel.
 */
const PRELUDE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local st = redis.call('HMGET', KEYS[1], 'state', 'gen', 'until')
local state = st[1] or 'CLOSED'
local gen = tonumber(st[2]) or 0
local untl = tonumber(st[3]) or 0
local function remaining()
  if state == 'OPEN' and untl > now then return untl - now end
  return 0
end
local function transition(next_state, open_ms, channel, name)
  state = next_state
  gen = gen + 1
  if next_state == 'OPEN' then untl = now + open_ms else untl = 0 end
  redis.call('HSET', KEYS[1], 'state', state, 'gen', gen, 'until', untl, 'ok', 0)
  redis.call('PEXPIRE', KEYS[1], 86400000)
  if next_state ~= 'HALF_OPEN' then redis.call('DEL', KEYS[2], KEYS[3]) end
  redis.call('PUBLISH', channel, state .. '|' .. gen .. '|' .. remaining() .. '|' .. name)
end
`;

/** ARGV: name, node, successes, failures, window_ms, minimum_calls, failure_rate_pct, min_nodes, open_ms, channel. Returns {state, gen, remaining_ms, calls, failures, nodes}. */
export const BREAKER_FLUSH_LUA = `${PRELUDE}
local name, node = ARGV[1], ARGV[2]
local succ, fail, window = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local bucket_ms = math.max(100, math.floor(window / 10))
local bucket = math.floor(now / bucket_ms)
if succ > 0 then redis.call('HINCRBY', KEYS[2], bucket .. ':s', succ) end
if fail > 0 then
  redis.call('HINCRBY', KEYS[2], bucket .. ':f', fail)
  redis.call('HSET', KEYS[3], node, now)
end
redis.call('PEXPIRE', KEYS[2], window * 2)
redis.call('PEXPIRE', KEYS[3], window * 2)
local oldest = bucket - math.ceil(window / bucket_ms) + 1
local calls, fails = 0, 0
local all = redis.call('HGETALL', KEYS[2])
for i = 1, #all, 2 do
  local f = all[i]
  local b = tonumber(string.sub(f, 1, -3))
  if b == nil or b < oldest then
    redis.call('HDEL', KEYS[2], f)
  else
    local v = tonumber(all[i + 1]) or 0
    calls = calls + v
    if string.sub(f, -1) == 'f' then fails = fails + v end
  end
end
local nodes = 0
local ns = redis.call('HGETALL', KEYS[3])
for i = 1, #ns, 2 do
  if (tonumber(ns[i + 1]) or 0) >= now - window then nodes = nodes + 1 else redis.call('HDEL', KEYS[3], ns[i]) end
end
if state == 'CLOSED' and calls >= tonumber(ARGV[6]) and fails * 100 >= tonumber(ARGV[7]) * calls and nodes >= tonumber(ARGV[8]) then
  transition('OPEN', tonumber(ARGV[9]), ARGV[10], name)
end
return {state, gen, remaining(), calls, fails, nodes}
`;

/** ARGV: unused. Returns {state, gen, remaining_ms}. */
export const BREAKER_GET_LUA = `${PRELUDE}
return {state, gen, remaining()}
`;

/** ARGV: name, owner, ttl_ms, channel. Returns {acquired 0|1, state, gen, remaining_ms}. */
export const BREAKER_PROBE_LUA = `${PRELUDE}
if state == 'CLOSED' or (state == 'OPEN' and untl > now) then return {0, state, gen, remaining()} end
if redis.call('SET', KEYS[4], ARGV[2], 'NX', 'PX', tonumber(ARGV[3])) then
  if state == 'OPEN' then transition('HALF_OPEN', 0, ARGV[4], ARGV[1]) end
  return {1, state, gen, 0}
end
return {0, state, gen, remaining()}
`;

/** ARGV: name, owner, success 0|1, required_successes, open_ms, channel. Returns {state, gen, remaining_ms}. */
export const BREAKER_PROBE_RESULT_LUA = `${PRELUDE}
if redis.call('GET', KEYS[4]) == ARGV[2] then redis.call('DEL', KEYS[4]) end
if state ~= 'HALF_OPEN' then return {state, gen, remaining()} end
if ARGV[3] == '1' then
  if redis.call('HINCRBY', KEYS[1], 'ok', 1) >= tonumber(ARGV[4]) then transition('CLOSED', 0, ARGV[6], ARGV[1]) end
else
  transition('OPEN', tonumber(ARGV[5]), ARGV[6], ARGV[1])
end
return {state, gen, remaining()}
`;

/** Parses a transition message; undefined for anything malformed (the channel is shared with whatever else publishes there). */
export function parseBreakerMessage(message: string): { name: string; state: string; generation: number; openRemainingMs: number } | undefined {
  const parts = message.split('|');
  if (parts.length < 4) return undefined;
  const [state, gen, remaining] = parts;
  const generation = Number(gen);
  const openRemainingMs = Number(remaining);
  if (!Number.isFinite(generation) || !Number.isFinite(openRemainingMs) || state === undefined) return undefined;
  return { name: parts.slice(3).join('|'), state, generation, openRemainingMs };
}
