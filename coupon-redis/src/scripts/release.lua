-- Gives back one slot a user holds, atomically, if it is still held at that rank in
-- that epoch and the settler has not claimed it.
-- KEYS[1] count, KEYS[2] users, KEYS[3] slots, KEYS[4] claims, KEYS[5] free
-- ARGV[1] user, ARGV[2] slot, ARGV[3] rank, ARGV[4] this server's identity ("~node":
-- the replication id of the node running it),
-- ARGV[5] the slot's epoch (0: any)
-- Returns 1 released, 0 not held (at that rank, in that epoch), 2 kept because claimed,
-- 3 not built on this server (a rebuild may be writing: change nothing).
local user = ARGV[1]
local slot = tonumber(ARGV[2])
local rank = ARGV[3]
local function rank_of(value)
  return string.match(value, '^(%d+):') or '0'
end

local identity = ARGV[4]
if identity == '~node' then
  identity = string.match(redis.call('INFO', 'replication'), 'master_replid:(%x+)')
end
local marker = redis.call('HMGET', KEYS[2], '~built', '~epoch')
if marker[1] ~= identity then
  return 3
end
if ARGV[5] ~= '0' and marker[2] ~= ARGV[5] then
  return 0
end
local field = user
if slot > 1 then
  field = user .. ':' .. slot
end
local value = redis.call('HGET', KEYS[2], field)
if not value or rank_of(value) ~= rank then
  return 0
end
local claim = redis.call('HGET', KEYS[4], field)
if claim and rank_of(claim) == rank then
  return 2
end

redis.call('HDEL', KEYS[2], field)
-- Per-user records exist only for limits above 1: the slot becomes a hole the next
-- grant takes, and a user holding nothing starts again from slot 1.
local slots = tonumber(redis.call('HGET', KEYS[3], user) or '0')
if slots > 1 then
  redis.call('HINCRBY', KEYS[3], user, -1)
  local holes = redis.call('HGET', KEYS[3], user .. ':h')
  if holes then
    holes = holes .. ' ' .. slot
  else
    holes = tostring(slot)
  end
  redis.call('HSET', KEYS[3], user .. ':h', holes)
elseif slots == 1 then
  redis.call('HDEL', KEYS[3], user, user .. ':h', user .. ':l')
end
-- Decrement only for a slot that was held; never below zero.
if tonumber(redis.call('GET', KEYS[1]) or '0') > 0 then
  redis.call('DECR', KEYS[1])
end
-- The rank waits for the next admission; try_acquire looks in the set only while the
-- "~free" count says one waits.
if tonumber(rank) > 0 and redis.call('ZADD', KEYS[5], rank, rank) == 1 then
  redis.call('HINCRBY', KEYS[2], '~free', 1)
end
return 1
