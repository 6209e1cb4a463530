-- Sets a bot's status if it is the expected one (compare-and-set).
-- KEYS[1]: bots:status HASH (bot id -> status)
-- ARGV[1]: bot id
-- ARGV[2]: expected status
-- ARGV[3]: new status
-- Returns: 1 if the status changed, 0 if it was not the expected one
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  return 1
end
return 0
