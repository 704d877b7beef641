-- Reads whether a campaign's counter is built on the server that runs this script.
-- KEYS[1] count, KEYS[2] users
-- ARGV[1] the identity the counter expects: a server's run id, or "~node" on Redis
-- Cluster, where the client cannot know which node runs a command: then the run id of
-- the node running this script (a replica promoted by a failover, or a node restarted
-- from its own files, has another one, and so is not taken for the server the counter
-- was built on).
-- Returns {built here (1 or 0), the epoch or -1, the count or -1}.
local identity = ARGV[1]
if identity == '~node' then
  identity = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')
end
local marker = redis.call('HMGET', KEYS[2], '~built', '~epoch')
local count = redis.call('GET', KEYS[1])
local built = 0
if marker[1] == identity and count then
  built = 1
end
return {built, tonumber(marker[2] or '-1'), tonumber(count or '-1')}
