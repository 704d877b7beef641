-- Ends a rebuild: puts the rank set and the per-user records the rebuild prepared in
-- place, counts the slots held, and marks the campaign built on this server in the
-- sealed epoch, if the rebuild still holds the lock.
-- KEYS[1] count, KEYS[2] users, KEYS[3] free, KEYS[4] slots, KEYS[5] rebuild lock,
-- KEYS[6] the prepared free ranks, KEYS[7] the prepared per-user records, KEYS[8] claims
-- ARGV[1] the lock's token, ARGV[2] this server's identity ("~node": the replication id
-- of the node running it), ARGV[3] the epoch
-- Returns the slots held, or -1 when the lock was lost (another rebuild may be
-- writing: change nothing).
if redis.call('GET', KEYS[5]) ~= ARGV[1] then
  return -1
end
-- Before any write: a server that cannot name itself must not be left half sealed.
local identity = ARGV[2]
if identity == '~node' then
  identity = string.match(redis.call('INFO', 'replication'), 'master_replid:(%x+)')
  if not identity then
    return redis.error_reply('no master_replid in INFO replication: cannot mark the counter built')
  end
end
-- Claims of earlier epochs are forgotten: a slot of the new epoch is claimed anew.
redis.call('DEL', KEYS[3], KEYS[4], KEYS[8])
if redis.call('EXISTS', KEYS[6]) == 1 then
  redis.call('RENAME', KEYS[6], KEYS[3])
end
if redis.call('EXISTS', KEYS[7]) == 1 then
  redis.call('RENAME', KEYS[7], KEYS[4])
end
redis.call('HDEL', KEYS[2], '~free', '~built', '~epoch')
local held = redis.call('HLEN', KEYS[2])
redis.call('SET', KEYS[1], held)
local free = redis.call('ZCARD', KEYS[3])
if free > 0 then
  redis.call('HSET', KEYS[2], '~free', free)
end
redis.call('HSET', KEYS[2], '~built', identity, '~epoch', ARGV[3])
redis.call('DEL', KEYS[5])
return held
