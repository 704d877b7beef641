-- Gives up a rebuild lock, only if it is still the caller's.
-- KEYS[1] rebuild lock, ARGV[1] the lock's token
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
