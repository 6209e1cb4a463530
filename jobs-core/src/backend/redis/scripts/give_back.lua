-- give_back: a delivery whose handler its worker lacks goes back as a delayed job, without
-- using a retry, and is counted for its name; once no live worker has had the handler for
-- `dead_after`, it is dead-lettered instead (a permanent failure with `err`).
-- ARGV[1]: id, ARGV[2]: attempt, ARGV[3]: name, ARGV[4]: delay ms, ARGV[5]: handled
-- elsewhere (0/1), ARGV[6]: dead_after ms, ARGV[7]: gap ms, ARGV[8]: names max, ARGV[9]:
-- the name counting for the names beyond it, ARGV[10]: err, ARGV[11..17]: policy()
-- Per name, in the counters HASH: unhandled:<name> give-backs, unhandled_at:<name> the last
-- one (ms), and while give-backs find no live worker with the handler, unhandled_since:<name>
-- the start of that run and unhandled_seen:<name> its last give-back; unhandled_names counts
-- the names.
-- Returns: {'DELAYED', due ms} | {'DEAD'} | {'CANCELLED'} | {'STALE'}
local id, att = ARGV[1], tonumber(ARGV[2])
local now = now_ms()
local h = parse(redis.call('HGET', K_JOBS, id))
if not h or h.s ~= 'r' or h.att ~= att then return { 'STALE' } end
local o = policy(11)
redis.call('ZREM', K_ACTIVE, id)
free_slots({ id }, { h })
if h.cx == 1 then
  finish(id, h, 'x', now, o.ttl)
  incr('cancelled', 1)
  return { 'CANCELLED' }
end
local name = ARGV[3]
if redis.call('HEXISTS', K_COUNTERS, 'unhandled:' .. name) == 0 then
  if tonumber(redis.call('HGET', K_COUNTERS, 'unhandled_names') or '0') < tonumber(ARGV[8]) then
    redis.call('HINCRBY', K_COUNTERS, 'unhandled_names', 1)
  else
    name = ARGV[9]
  end
end
redis.call('HINCRBY', K_COUNTERS, 'unhandled:' .. name, 1)
redis.call('HSET', K_COUNTERS, 'unhandled_at:' .. name, now)
if ARGV[5] == '1' then
  redis.call('HDEL', K_COUNTERS, 'unhandled_since:' .. name, 'unhandled_seen:' .. name)
else
  local r = redis.call('HMGET', K_COUNTERS, 'unhandled_since:' .. name, 'unhandled_seen:' .. name)
  local since, seen = tonumber(r[1]), tonumber(r[2])
  if not since or not seen or now - seen > tonumber(ARGV[7]) then since = now end
  redis.call('HSET', K_COUNTERS, 'unhandled_since:' .. name, since, 'unhandled_seen:' .. name, now)
  if now - since >= tonumber(ARGV[6]) then
    return fail_job(id, h, ARGV[10], false, now, o)
  end
end
local due = now + tonumber(ARGV[4])
h.s = 'p'
h.sa = due
redis.call('HSET', K_JOBS, id, fmt(h))
redis.call('ZADD', K_SCHED, due, id)
mark_due(due)
return { 'DELAYED', due }
