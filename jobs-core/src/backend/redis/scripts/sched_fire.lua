-- sched_fire: enqueues a schedule's job. With a tick, first claims it: a compare-and-set of
-- the schedule's next run in cron_due, in the same atomic step as the enqueue, so each tick
-- enqueues exactly one job however many schedulers race for it (REDIS.md §6).
-- ARGV[1]: name, ARGV[2]: tick ms ('' = run now, no claim), ARGV[3]: next run after the
--          tick, ms ('' = none: the schedule is done), ARGV[4]: definition hash the caller
--          computed the next run from, ARGV[5]: generation the caller read with the tick
--          (and derived the job id from; '' with no claim),
-- ARGV[6..11]: the job: id, priority 0..3, max_retries, timeout ms, meta JSON, payload JSON,
-- ARGV[12] (optional): its named queue ('' or none: the default queue)
-- Returns: {'FIRED', now} | {'DUP', now} | {'STALE', current next run ms or -1} |
--          {'NOTDUE', now} | {'NOTFOUND'}
local now = now_ms()
local name, hash = ARGV[1], ARGV[4]
local tick, nxt, gen = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[5])
local id, p, mr, to = ARGV[6], tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local meta, payload, q = ARGV[10], ARGV[11], ARGV[12] or ''
-- Check every argument before the first write (scripts are not rolled back).
if not p or p < 0 or p > 3 or not fits_hot(mr, to) or not meta or not payload
    or (q ~= '' and not valid_queue(q)) then
  return redis.error_reply('ERR sched_fire: malformed job arguments')
end
if tick and not gen then
  return redis.error_reply('ERR sched_fire: a tick claim needs the generation')
end
if tick and nxt and nxt <= tick then
  return redis.error_reply('ERR sched_fire: next run must be later than the tick')
end

local c = sched_parse(redis.call('HGET', K_CRON, name))
if not c then return { 'NOTFOUND' } end

if tick then
  local cur = sched_next(name)
  -- Someone else moved the next run (they fired this tick), or the definition changed
  -- under the caller (its next run would be computed from the old one, its job id derived
  -- from the old generation).
  if cur ~= tick or c.hash ~= hash or c.gen ~= gen then return { 'STALE', cur } end
  -- Decided on the server's clock: a scheduler whose clock runs fast cannot fire early.
  if tick > now then return { 'NOTDUE', now } end
  if nxt then
    redis.call('ZADD', K_CRONDUE, 'XX', nxt, name)
  else
    redis.call('ZREM', K_CRONDUE, name)
  end
end

-- The job, written as enqueue.lua writes one ready job. The id of a tick's job is derived
-- from (name, tick, generation), so HEXISTS is a second guard against a repeated tick.
if redis.call('HEXISTS', K_JOBS, id) == 1 then return { 'DUP', now } end
-- An id whose earlier job left a ghost in a list gets a generation (see lib.lua).
local g = ''
if redis.call('HEXISTS', K_GHOSTS, id) == 1 then g = new_generation() end
local h = { s = 'p', p = p, att = 0, rc = 0, mr = mr, to = to, cx = 0, stl = 0, ca = now,
  sa = tick or 0, st = 0, fa = 0, g = g, q = q, meta = with_args(meta, payload) }
redis.call('HSET', K_JOBS, id, fmt(h))
redis.call('RPUSH', pending_of(q, p + 1), entry(id, h))
if q ~= '' then redis.call('HSETNX', K_QUEUES, q, 'a') end
mark_ready(q)
incr('enqueued', 1)

c.runs = c.runs + 1
c.last = now
c.job = id
redis.call('HSET', K_CRON, name, sched_fmt(c))
return { 'FIRED', now }
