-- Records slots a rebuild's seal answered, atomically per call, while the rebuild still
-- holds the campaign's lock; never removes or lowers anything.
-- KEYS[1] users, KEYS[2] rebuild lock
-- ARGV[1] the lock's token, then triples: user, slot, rank
-- A slot already held is kept as it is.
-- Returns the slots added, or -1 when the lock is not the caller's any more (another
-- rebuild took over: write nothing).
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return -1
end
local now = redis.call('TIME')
local ms = string.format('%.0f', now[1] * 1000 + math.floor(now[2] / 1000))
local added = 0
for i = 2, #ARGV, 3 do
  local user, slot, rank = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  local field = user
  if slot > 1 then
    field = user .. ':' .. slot
  end
  if redis.call('HSETNX', KEYS[1], field, rank .. ':' .. ms) == 1 then
    added = added + 1
  end
end
return added
