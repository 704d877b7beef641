-- Gives back one slot a user holds, atomically.
-- KEYS[1] count, KEYS[2] users, KEYS[3] slots; ARGV[1] user
-- Returns 1 when a slot was held (and is now released), 0 otherwise.
local user = ARGV[1]
if redis.call('HEXISTS', KEYS[2], user) == 0 then
  return 0
end

local slots = redis.call('HGET', KEYS[3], user)
if slots and tonumber(slots) > 1 then
  redis.call('HINCRBY', KEYS[3], user, -1)
else
  redis.call('HDEL', KEYS[2], user)
  redis.call('HDEL', KEYS[3], user)
end

-- Decrement only for a slot that was held; never below zero.
if tonumber(redis.call('GET', KEYS[1]) or '0') > 0 then
  redis.call('DECR', KEYS[1])
end
return 1
