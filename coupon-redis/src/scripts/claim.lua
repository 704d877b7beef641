-- Claims slots for settlement, atomically: a slot still held at the given rank, and not
-- claimed in the last reclaim_after ms (by the Redis clock), is marked claimed now.
-- KEYS[1] users, KEYS[2] claims
-- ARGV[1] reclaim_after in ms, then triples: user, slot, rank
-- Returns the 0-based indexes of the triples claimed.
local after = tonumber(ARGV[1])
local now = redis.call('TIME')
local now_ms = now[1] * 1000 + math.floor(now[2] / 1000)
local function rank_of(value)
  return string.match(value, '^(%d+):') or '0'
end

local claimed = {}
for i = 2, #ARGV, 3 do
  local user, slot, rank = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  local field = user
  if slot > 1 then
    field = user .. ':' .. slot
  end
  local value = redis.call('HGET', KEYS[1], field)
  if value and rank_of(value) == rank then
    local claim = redis.call('HGET', KEYS[2], field)
    local fresh = false
    if claim and rank_of(claim) == rank then
      local at = tonumber(string.match(claim, ':(%d+)$') or '0')
      fresh = now_ms - at < after
    end
    if not fresh then
      redis.call('HSET', KEYS[2], field, rank .. ':' .. string.format('%.0f', now_ms))
      table.insert(claimed, (i - 2) / 3)
    end
  end
end
return claimed
