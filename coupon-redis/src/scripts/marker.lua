-- Reads whether a campaign's counter is built on the server that runs this script.
-- KEYS[1] count, KEYS[2] users
-- ARGV[1] the identity the counter expects: a server's run id, or "~node" on Redis
-- Cluster, where the client cannot know which node runs a command: then the
-- replication id of the node running this script, which every restart and every
-- promotion changes (a replica promoted by a failover, a node restarted from its own
-- files, a primary failed back to are not taken for the server the counter was built
-- on).
-- Returns {built here (1 or 0), the epoch or -1, whether the count exists (1 or 0),
-- the count or 0}.
local identity = ARGV[1]
if identity == '~node' then
  identity = string.match(redis.call('INFO', 'replication'), 'master_replid:(%x+)')
end
local marker = redis.call('HMGET', KEYS[2], '~built', '~epoch')
local count = redis.call('GET', KEYS[1])
local built = 0
if marker[1] == identity and count then
  built = 1
end
local exists = 0
if count then
  exists = 1
end
return {built, tonumber(marker[2] or '-1'), exists, tonumber(count or '0')}
