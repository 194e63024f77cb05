-- One rate-limit check, atomically, in one round trip.
-- KEYS[1]: the counter. ARGV: algorithm ("tb" | "sw"), limit, window_ms, burst, cost.
-- Time comes from the Redis server, so every gateway node uses the same clock.
-- Returns {allowed (0|1), limit, remaining, reset_ms, retry_after_ms}.
-- Mirrors host/src/plugin/limiter/local.rs; keep the two in step.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local key = KEYS[1]
local limit = tonumber(ARGV[2])
local window = math.max(tonumber(ARGV[3]), 1)
local burst = tonumber(ARGV[4])
if burst == 0 then burst = limit end
local cost = math.max(tonumber(ARGV[5]), 1)

if ARGV[1] == 'tb' then
  local cap = burst * 1000
  local s = redis.call('HMGET', key, 't', 'at')
  local tokens = tonumber(s[1]) or cap
  local at = tonumber(s[2]) or now
  local elapsed = math.max(now - at, 0)
  tokens = math.min(cap, tokens + math.floor(elapsed * limit * 1000 / window))
  local need = cost * 1000
  local per = math.ceil(window / math.max(limit, 1))
  local allowed = 0
  if tokens >= need then
    tokens = tokens - need
    allowed = 1
  end
  local missing = 0
  if allowed == 0 then missing = need - tokens end
  local reset = math.ceil((cap - tokens) * per / 1000)
  redis.call('HSET', key, 't', tokens, 'at', now)
  -- Once full again the key says nothing a missing key would not.
  redis.call('PEXPIRE', key, reset + 1000)
  return {allowed, burst, math.floor(tokens / 1000), reset, math.ceil(missing * per / 1000)}
end

local s = redis.call('HMGET', key, 'c', 'p', 's')
local cur = tonumber(s[1]) or 0
local prev = tonumber(s[2]) or 0
local start = tonumber(s[3]) or now
local since = math.max(now - start, 0)
if since >= 2 * window then
  prev, cur = 0, 0
  start = now - (since % window)
elseif since >= window then
  prev, cur = cur, 0
  start = start + window
end
local into = math.max(now - start, 0)
-- The previous window counts in proportion to how much of it still overlaps.
local weighted = math.floor(prev * (window - into) / window) + cur
local allowed = 0
if weighted + cost <= limit then
  allowed = 1
  cur = cur + cost
end
local used = weighted
if allowed == 1 then used = used + cost end
redis.call('HSET', key, 'c', cur, 'p', prev, 's', start)
redis.call('PEXPIRE', key, 2 * window)
local reset = window - into
local retry = 0
if allowed == 0 then retry = reset end
return {allowed, limit, math.max(limit - used, 0), reset, retry}
