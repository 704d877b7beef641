-- Records slots from the store's truth, atomically per call; never lowers anything.
-- KEYS[1] count, KEYS[2] users, KEYS[3] slots
-- ARGV[1] per-user limit, then triples: user, slot, rank (one per coupon the store holds)
-- A slot already held (admitted since the loss, perhaps at another rank) is kept.
-- Returns { slots added, count afterwards }.
local limit = tonumber(ARGV[1])
local now = redis.call('TIME')
local ms = string.format('%.0f', now[1] * 1000 + math.floor(now[2] / 1000))
local added = 0

for i = 2, #ARGV, 3 do
  local user, slot, rank = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  local field = user
  if slot > 1 then
    field = user .. ':' .. slot
  end
  if redis.call('HSETNX', KEYS[2], field, rank .. ':' .. ms) == 1 then
    if limit > 1 then
      redis.call('HINCRBY', KEYS[3], user, 1)
    end
    added = added + 1
  end
end

if added > 0 then
  redis.call('INCRBY', KEYS[1], added)
end
return { added, tonumber(redis.call('GET', KEYS[1]) or '0') }
