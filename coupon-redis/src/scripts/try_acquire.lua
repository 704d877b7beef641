-- Admits one user to one campaign, atomically. One round trip per apply; the work is
-- bounded whatever the campaign's per-user limit: a returning user costs two hash reads.
-- KEYS[1] count   (string: slots taken)
-- KEYS[2] users   (hash: "<user>" for slot 1, "<user>:<slot>" above ->
--                  "<rank>:<ms>:<token>", the admission time by the Redis clock and the
--                  token of the request that took it; field "~free": how many ranks
--                  wait in KEYS[4], absent when none; field "~built": the identity of
--                  the server the counter was built on; field "~epoch": the epoch its
--                  rebuild sealed)
-- KEYS[3] slots   (hash, only for per-user limits above 1: "<user>" -> slots held,
--                  "<user>:l" -> the slot granted last, "<user>:h" -> released slots
--                  below the highest, space-separated)
-- KEYS[4] free    (sorted set: ranks given back by releases, granted again first)
-- ARGV[1] user, ARGV[2] cap, ARGV[3] per-user limit, ARGV[4] this server's identity,
-- ARGV[5] the request's token, unique per call
-- Returns {rank, slot, epoch} when granted, 0 when sold out, -1 when already applied,
-- -2 when the counter is not built on this server (never built, restarted empty, a key
-- lost, a failover): it must not admit anyone until it is rebuilt.
-- The same request run twice (a client that resent it after a dropped connection, as
-- the Cluster client does) answers its first grant again, instead of taking a second
-- slot or answering "already applied" to the applicant who got the first.
local user = ARGV[1]
local cap = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local suffix = ':' .. ARGV[5]

local state = redis.call('HMGET', KEYS[2], user, '~free', '~built', '~epoch')
if state[3] ~= ARGV[4] then
  return -2
end
local epoch = tonumber(state[4])
local count = redis.call('GET', KEYS[1])
if not epoch or not count then
  return -2
end
count = tonumber(count)

-- The grant a slot's value records, if this very request made it.
local function regrant(value, slot)
  if value and string.sub(value, -#suffix) == suffix then
    return {tonumber(string.match(value, '^(%d+):')), slot, epoch}
  end
  return nil
end

local held
if limit == 1 then
  local again = regrant(state[1], 1)
  if again then
    return again
  end
  held = state[1] and 1 or 0
else
  local mine = redis.call('HMGET', KEYS[3], user, user .. ':l')
  held = tonumber(mine[1] or '0')
  if held > 0 then
    -- A request grants one slot, so a resent one can only be the user's last grant.
    local last = tonumber(mine[2] or '1')
    local field = user
    if last > 1 then
      field = user .. ':' .. last
    end
    local again = regrant(redis.call('HGET', KEYS[2], field), last)
    if again then
      return again
    end
  end
end
if held >= limit then
  return -1
end

-- Compare before incrementing: the count never passes the cap, unlike INCR-then-check.
if count >= cap then
  return 0
end

-- A released rank first, so that the ranks held stay distinct and within 1..cap.
local rank
if state[2] then
  local popped = redis.call('ZPOPMIN', KEYS[4])
  if not popped[1] then
    -- Ranks are said to wait but their set is gone: the state is damaged, so the
    -- counter stops admitting until a rebuild recomputes it.
    redis.call('HDEL', KEYS[2], '~built')
    return -2
  end
  rank = tonumber(popped[1])
  if redis.call('HINCRBY', KEYS[2], '~free', -1) <= 0 then
    redis.call('HDEL', KEYS[2], '~free')
  end
  redis.call('INCR', KEYS[1])
else
  rank = redis.call('INCR', KEYS[1])
end

-- The user's lowest free slot (the ticket id follows from it): a released one if any
-- (at most limit of them), else the next above those held.
local slot = 1
local field = user
if limit > 1 then
  local holes = redis.call('HGET', KEYS[3], user .. ':h')
  slot = held + 1
  if holes then
    local lowest, rest = nil, {}
    for hole in string.gmatch(holes, '%d+') do
      local n = tonumber(hole)
      if not lowest or n < lowest then
        if lowest then
          table.insert(rest, lowest)
        end
        lowest = n
      else
        table.insert(rest, n)
      end
    end
    slot = lowest
    if #rest > 0 then
      redis.call('HSET', KEYS[3], user .. ':h', table.concat(rest, ' '))
    else
      redis.call('HDEL', KEYS[3], user .. ':h')
    end
  end
  if slot > 1 then
    field = user .. ':' .. slot
  end
  redis.call('HINCRBY', KEYS[3], user, 1)
  redis.call('HSET', KEYS[3], user .. ':l', slot)
end

local now = redis.call('TIME')
local ms = now[1] * 1000 + math.floor(now[2] / 1000)
redis.call('HSET', KEYS[2], field, string.format('%.0f:%.0f', rank, ms) .. suffix)
return {rank, slot, epoch}
