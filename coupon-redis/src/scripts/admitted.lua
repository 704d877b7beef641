-- Whether a user holds a slot of a campaign, asked of a counter built on this server.
-- KEYS[1] count, KEYS[2] users, KEYS[3] slots (per-user records, limits above 1)
-- ARGV[1] this server's identity ("~node": the replication id of the node running it),
-- ARGV[2] the user
-- Returns 1 held, 0 not held, -1 not built on this server (a restart, a lost key, a
-- failover: the counter cannot tell until it is rebuilt).
local identity = ARGV[1]
if identity == '~node' then
  identity = string.match(redis.call('INFO', 'replication'), 'master_replid:(%x+)')
end
if redis.call('HGET', KEYS[2], '~built') ~= identity or redis.call('EXISTS', KEYS[1]) == 0 then
  return -1
end
if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 1 then
  return 1
end
-- Above slot 1 (its slot 1 given back, a later one held) the per-user count tells.
if tonumber(redis.call('HGET', KEYS[3], ARGV[2]) or '0') > 0 then
  return 1
end
return 0
