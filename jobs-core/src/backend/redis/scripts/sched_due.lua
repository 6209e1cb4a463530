-- sched_due: the schedules due now, for the scheduler loop.
-- ARGV[1]: the most schedules to return
-- Returns: { now, earliest next run ms of any schedule or -1,
--            then per due schedule (earliest first): name, tick ms, record }
local now = now_ms()
local first = redis.call('ZRANGE', K_CRONDUE, 0, 0, 'WITHSCORES')
local out = { now, -1 }
if first[2] then out[2] = tonumber(first[2]) end
local due = redis.call('ZRANGEBYSCORE', K_CRONDUE, '-inf', now, 'WITHSCORES', 'LIMIT', 0,
  tonumber(ARGV[1]))
for i = 1, #due, 2 do
  local rec = redis.call('HGET', K_CRON, due[i])
  if rec then
    out[#out + 1] = due[i]
    out[#out + 1] = tonumber(due[i + 1])
    out[#out + 1] = rec
  end
end
return out
