-- sched_enable: enables or disables a schedule.
-- ARGV[1]: name, ARGV[2]: '1' enable | '0' disable, ARGV[3]: next run ms if it gets enabled
-- ('' = none)
-- Returns: {} if there is no such schedule, else { record, next run ms or -1 }
local name, want = ARGV[1], ARGV[2]
local first = tonumber(ARGV[3])
local rec = redis.call('HGET', K_CRON, name)
if not rec then return {} end
local c = sched_parse(rec)
if not c then return redis.error_reply('ERR sched_enable: unreadable schedule record') end
if c.en ~= want then
  c.en = want
  -- Enabling starts a new generation (see sched_lib.lua).
  if want == '1' then c.gen = c.gen + 1 end
  rec = sched_fmt(c)
  redis.call('HSET', K_CRON, name, rec)
  if want == '1' and first then
    redis.call('ZADD', K_CRONDUE, first, name)
  else
    redis.call('ZREM', K_CRONDUE, name)
  end
end
return { rec, sched_next(name) }
