-- Records holders from the store's truth, atomically per call; never lowers anything.
-- KEYS[1] count, KEYS[2] users, KEYS[3] slots
-- ARGV[1] per-user limit, then pairs: user, coupons the store holds for that user
-- Returns { slots added, count afterwards }.
local limit = tonumber(ARGV[1])
local now = redis.call('TIME')
local now_ms = now[1] * 1000 + math.floor(now[2] / 1000)
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
  if stored > held then
    if held == 0 then
      redis.call('HSET', KEYS[2], user, now_ms)
    end
    if limit > 1 then
      redis.call('HINCRBY', KEYS[3], user, stored - held)
    end
    added = added + stored - held
  end
end

if added > 0 then
  redis.call('INCRBY', KEYS[1], added)
end
return { added, tonumber(redis.call('GET', KEYS[1]) or '0') }
