-- Ends a rebuild: marks a campaign's counter built on this server, once the rebuild's
-- slots and free ranks are written, if the rebuild still holds the lock.
-- KEYS[1] count, KEYS[2] users, KEYS[3] free, KEYS[4] rebuild lock
-- ARGV[1] the lock's token, ARGV[2] this server's identity, ARGV[3] the slots held
-- Returns 1 sealed, 0 the lock was lost (another rebuild may be writing: change nothing).
if redis.call('GET', KEYS[4]) ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[3])
local free = redis.call('ZCARD', KEYS[3])
if free > 0 then
  redis.call('HSET', KEYS[2], '~free', free)
else
  redis.call('HDEL', KEYS[2], '~free')
end
redis.call('HSET', KEYS[2], '~built', ARGV[2])
redis.call('DEL', KEYS[4])
return 1
