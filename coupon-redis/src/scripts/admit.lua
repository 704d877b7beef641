-- Admits the users of one gathered call to one campaign, in the order given, each as
-- if alone, atomically: one round trip for every apply that waited for the campaign.
-- The work per user is bounded whatever the campaign's per-user limit: a returning user
-- costs at most two hash reads, and each call one more. With a per-user limit of 1 (the
-- common case) the users' fields are read with one HMGET and the grants written with
-- one HSET per call, not one command per user.
-- KEYS[1] count   (string: slots taken)
-- KEYS[2] users   (hash: "<user>" for slot 1, "<user>:<slot>" above ->
--                  "<rank>:<ms>:<call token>.<entry>", the admission time by the Redis
--                  clock and the request that took it; field "~free": how many ranks
--                  wait in KEYS[4], absent when none; field "~built": the identity of
--                  the server the counter was built on; field "~epoch": the epoch its
--                  rebuild sealed)
-- KEYS[3] slots   (hash, only for per-user limits above 1: "<user>" -> slots held,
--                  "<user>:l" -> the slot granted last, "<user>:h" -> released slots
--                  below the highest, space-separated)
-- KEYS[4] free    (sorted set: ranks given back by releases, granted again first)
-- ARGV[1] cap, ARGV[2] per-user limit, ARGV[3] this server's identity ("~node": the
-- replication id of the node running it), ARGV[4] the call's
-- token (unique per call), ARGV[5..] the users, one entry per apply
-- Returns a flat array, no nested ones (cheaper to build and to send): the epoch the
-- grants were made in (0 when none could be), then two integers per entry, in order:
-- rank and slot when granted; 0, 0 when sold out; -1, 0 when already applied; -2, 0 when
-- the counter is not built on this server (never built, restarted empty, a key lost, a
-- failover): then no entry is admitted.
-- The same call run twice (a client that resent it after a dropped connection, as the
-- Cluster client does) answers each entry's first grant again, instead of taking a
-- second slot or answering "already applied" to the applicant who got the first; two
-- entries of one user in one call are two applies.
local cap = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local answers = {0}
-- On Redis Cluster ("~node") the identity is the replication id of the node running
-- this call, which every restart and every promotion changes: a promoted replica, a
-- node restarted from its own files, a primary failed back to, are not built.
local identity = ARGV[3]
if identity == '~node' then
  identity = string.match(redis.call('INFO', 'replication'), 'master_replid:(%x+)')
end

local marker = redis.call('HMGET', KEYS[2], '~built', '~epoch', '~free')
local epoch = tonumber(marker[2])
local count = redis.call('GET', KEYS[1])
if marker[1] ~= identity or not epoch or not count then
  for i = 5, #ARGV do
    answers[#answers + 1] = -2
    answers[#answers + 1] = 0
  end
  return answers
end
answers[1] = epoch
count = tonumber(count)
local free = tonumber(marker[3] or '0')
local now = redis.call('TIME')
local ms = string.format('%.0f', now[1] * 1000 + math.floor(now[2] / 1000))
local taken = 0

-- The rank of the grant a slot's value records, if the entry whose suffix is `suffix`
-- made it.
local function regrant(value, suffix)
  if value and string.sub(value, -#suffix) == suffix then
    return tonumber(string.match(value, '^(%d+):'))
  end
  return nil
end

-- Limit 1: every entry's field read at once, the grants written at once (`flush`);
-- `granted` holds the values written by this call, for a user's later entry.
local firsts, writes, granted = nil, {}, {}
if limit == 1 and #ARGV >= 5 then
  firsts = redis.call('HMGET', KEYS[2], unpack(ARGV, 5))
end
local function flush()
  if #writes > 0 then
    redis.call('HSET', KEYS[2], unpack(writes))
    writes = {}
  end
end

for i = 5, #ARGV do
  local user = ARGV[i]
  local suffix = ':' .. ARGV[4] .. '.' .. (i - 4)

  local answer
  local answer_slot = 1
  local held
  local holes
  if limit == 1 then
    local first = granted[user] or firsts[i - 4]
    answer = regrant(first, suffix)
    held = first and 1 or 0
  else
    local mine = redis.call('HMGET', KEYS[3], user, user .. ':l', user .. ':h')
    held = tonumber(mine[1] or '0')
    holes = mine[3]
    if held > 0 then
      -- A request grants one slot, so a resent one can only be the user's last grant.
      local last = tonumber(mine[2] or '1')
      local field = user
      if last > 1 then
        field = user .. ':' .. last
      end
      answer = regrant(redis.call('HGET', KEYS[2], field), suffix)
      answer_slot = last
    end
  end

  if answer then
    answers[#answers + 1] = answer
    answers[#answers + 1] = answer_slot
  elseif held >= limit then
    answers[#answers + 1] = -1
    answers[#answers + 1] = 0
  elseif count >= cap then
    -- Compare before incrementing: the count never passes the cap.
    answers[#answers + 1] = 0
    answers[#answers + 1] = 0
  else
    -- A released rank first, so that the ranks held stay distinct and within 1..cap.
    local rank
    if free > 0 then
      local popped = redis.call('ZPOPMIN', KEYS[4])
      if popped[1] then
        rank = tonumber(popped[1])
        free = free - 1
      else
        -- Ranks are said to wait but their set is gone: the state is damaged, so the
        -- counter stops admitting (from this entry on) until a rebuild recomputes it.
        flush()
        redis.call('HDEL', KEYS[2], '~built')
        redis.call('SET', KEYS[1], count)
        for _ = i, #ARGV do
          answers[#answers + 1] = -2
          answers[#answers + 1] = 0
        end
        return answers
      end
    end
    count = count + 1
    taken = taken + 1
    if not rank then
      rank = count
    end

    -- The user's lowest free slot (the ticket id follows from it): a released one if
    -- any (at most limit of them), else the next above those held.
    local slot = 1
    local field = user
    if limit > 1 then
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
    local value = string.format('%.0f', rank) .. ':' .. ms .. suffix
    if limit == 1 then
      writes[#writes + 1] = field
      writes[#writes + 1] = value
      granted[user] = value
    else
      redis.call('HSET', KEYS[2], field, value)
    end
    answers[#answers + 1] = rank
    answers[#answers + 1] = slot
  end
end

flush()
if taken > 0 then
  redis.call('SET', KEYS[1], count)
  if free > 0 then
    redis.call('HSET', KEYS[2], '~free', free)
  else
    redis.call('HDEL', KEYS[2], '~free')
  end
end
return answers
