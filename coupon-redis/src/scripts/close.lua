-- Closes a campaign for a rebuild: no admission until its seal, if the rebuild still
-- holds the lock (one that lost it must not close a counter another rebuild built).
-- KEYS[1] users, KEYS[2] rebuild lock
-- ARGV[1] the lock's token
-- Returns 1 closed, 0 the lock is not the caller's.
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return 0
end
redis.call('HDEL', KEYS[1], '~built')
return 1
