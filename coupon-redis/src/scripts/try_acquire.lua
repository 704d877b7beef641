-- Admits one user to one campaign, atomically. One round trip per apply.
-- KEYS[1] count   (string: slots taken)
-- KEYS[2] users   (hash: user -> admission time in ms, by the Redis clock)
-- KEYS[3] slots   (hash: user -> slots held; used only when the per-user limit is above 1)
-- ARGV[1] user, ARGV[2] cap, ARGV[3] per-user limit
-- Returns the rank (>= 1) when granted, 0 when sold out, -1 when already applied.
local user = ARGV[1]
local cap = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])

local held
if limit == 1 then
  held = redis.call('HEXISTS', KEYS[2], user)
else
  held = tonumber(redis.call('HGET', KEYS[3], user) or '0')
end
if held >= limit then
  return -1
end

-- Compare before incrementing: the count never passes the cap, unlike INCR-then-check.
local count = tonumber(redis.call('GET', KEYS[1]) or '0')
if count >= cap then
  return 0
end

if held == 0 then
  local now = redis.call('TIME')
  redis.call('HSET', KEYS[2], user, now[1] * 1000 + math.floor(now[2] / 1000))
end
if limit > 1 then
  redis.call('HINCRBY', KEYS[3], user, 1)
end
return redis.call('INCR', KEYS[1])
