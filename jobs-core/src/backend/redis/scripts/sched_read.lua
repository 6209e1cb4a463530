-- sched_read: one schedule, or all, with their next runs, in one consistent read.
-- ARGV[1]: name ('' = every schedule)
-- Returns: flat { name, record, next run ms or -1, ... }
local out = {}
local function add(name, rec)
  out[#out + 1] = name
  out[#out + 1] = rec
  out[#out + 1] = sched_next(name)
end
if ARGV[1] ~= '' then
  local rec = redis.call('HGET', K_CRON, ARGV[1])
  if rec then add(ARGV[1], rec) end
else
  local all = redis.call('HGETALL', K_CRON)
  for i = 1, #all, 2 do add(all[i], all[i + 1]) end
end
return out
