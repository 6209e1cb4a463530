-- sched_remove: deletes a schedule and its next run.
-- ARGV[1]: name
-- Returns: 1 if it existed, else 0
redis.call('ZREM', K_CRONDUE, ARGV[1])
return redis.call('HDEL', K_CRON, ARGV[1])
