-- Extends a rebuild's lock while the rebuild runs (its seal may wait long for a queue
-- to drain), only if the lock is still the caller's.
-- KEYS[1] rebuild lock, ARGV[1] the lock's token, ARGV[2] the new time to live in ms
-- Returns 1 extended, 0 the lock is not the caller's.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
