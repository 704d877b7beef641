-- Records holders from the store's truth, atomically per call; never lowers anything.
-- KEYS[1] count, KEYS[2] users, KEYS[3] slots
-- ARGV[1] per-user limit, then pairs: user, coupons the store holds for that user
-- Returns { slots added, count afterwards }. Slots recorded here have rank 0 (unknown).
local limit = tonumber(ARGV[1])
local now = redis.call('TIME')
local value = '0:' .. string.format('%.0f', now[1] * 1000 + math.floor(now[2] / 1000))
local added = 0

for i = 2, #ARGV, 2 do
  local user = ARGV[i]
  local stored = tonumber(ARGV[i + 1])
  local held
  if limit == 1 then
    held = redis.call('HEXISTS', KEYS[2], user)
  else
    held = tonumber(redis.call('HGET', KEYS[3], user) or '0')
  end
  -- A user holding more slots than the store has coupons is an admission still on its
  -- way to the store: keep it.
  local slot = 1
  local field = user
  while held < stored do
    while redis.call('HEXISTS', KEYS[2], field) == 1 do
      slot = slot + 1
      field = user .. ':' .. slot
    end
    redis.call('HSET', KEYS[2], field, value)
    if limit > 1 then
      redis.call('HINCRBY', KEYS[3], user, 1)
    end
    held = held + 1
    added = added + 1
  end
end

if added > 0 then
  redis.call('INCRBY', KEYS[1], added)
end
return { added, tonumber(redis.call('GET', KEYS[1]) or '0') }
