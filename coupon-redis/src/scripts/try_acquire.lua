-- Admits one user to one campaign, atomically. One round trip per apply.
-- KEYS[1] count   (string: slots taken)
-- KEYS[2] users   (hash: "<user>" for slot 1, "<user>:<slot>" above -> "<rank>:<ms>",
--                  the admission time by the Redis clock)
-- KEYS[3] slots   (hash: user -> slots held; used only when the per-user limit is above 1)
-- KEYS[4] free    (sorted set: ranks given back by releases, granted again first)
-- ARGV[1] user, ARGV[2] cap, ARGV[3] per-user limit
-- Returns {rank, slot, admission time in ms} when granted, 0 when sold out, -1 when
-- already applied.
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

-- The user's lowest free slot: the ticket id follows from it.
local slot = 1
local field = user
if limit > 1 then
  while redis.call('HEXISTS', KEYS[2], field) == 1 do
    slot = slot + 1
    field = user .. ':' .. slot
  end
  redis.call('HINCRBY', KEYS[3], user, 1)
end

-- A released rank first, so that the ranks held stay distinct and within 1..cap.
local rank
local free = redis.call('ZPOPMIN', KEYS[4])
if free[1] then
  rank = tonumber(free[1])
  redis.call('INCR', KEYS[1])
else
  rank = redis.call('INCR', KEYS[1])
end
local now = redis.call('TIME')
local ms = now[1] * 1000 + math.floor(now[2] / 1000)
redis.call('HSET', KEYS[2], field, string.format('%.0f:%.0f', rank, ms))
return {rank, slot, ms}
