-- Restarts an unhealthy bot: running again, one more restart, a fresh heartbeat.
-- KEYS[1]: bots:status HASH (bot id -> status)
-- KEYS[2]: bots:restarts HASH (bot id -> count)
-- KEYS[3]: bots:heartbeat HASH (bot id -> ms)
-- KEYS[4]: bots:restarted HASH (bot id -> ms)
-- ARGV[1]: bot id
-- ARGV[2]: now (ms)
-- Returns: the new restart count, or -1 if the bot was not unhealthy
if redis.call('HGET', KEYS[1], ARGV[1]) ~= 'unhealthy' then
  return -1
end
redis.call('HSET', KEYS[1], ARGV[1], 'running')
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[4], ARGV[1], ARGV[2])
return redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
