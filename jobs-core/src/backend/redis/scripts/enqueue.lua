-- enqueue: creates jobs, all in one atomic step.
-- ARGV[1]: n; then n groups of 8: id, priority 0..3, run_at ms (0: none), delay ms (0: none),
--          max_retries, timeout ms, meta JSON, payload JSON
-- Returns: one integer per job, 1 created, 0 duplicate (id exists, or repeats in the batch).
local n = tonumber(ARGV[1])
local now = now_ms()
-- Check every argument before the first write: a script that errors half-way would leave
-- half a batch behind (Redis does not roll scripts back).
for i = 0, n - 1 do
  local b = 2 + i * 8
  local p = tonumber(ARGV[b + 1])
  if not p or p < 0 or p > 3 or not tonumber(ARGV[b + 2]) or not tonumber(ARGV[b + 3])
      or not fits_hot(tonumber(ARGV[b + 4]), tonumber(ARGV[b + 5])) then
    return redis.error_reply('ERR enqueue: malformed arguments for job ' .. tostring(i))
  end
end

local ids = {}
for i = 0, n - 1 do ids[i + 1] = ARGV[2 + i * 8] end
local existing = hmget(K_JOBS, ids)
-- An id whose earlier job left a ghost in a list (see lib.lua) gets a generation. Almost
-- always there are no ghosts at all, and this costs one EXISTS.
local haunted = {}
if redis.call('EXISTS', K_GHOSTS) == 1 then haunted = hmget(K_GHOSTS, ids) end
local gen = nil

local out, seen = {}, {}
local recs, sched = {}, {}
local ready = { {}, {}, {} , {} }
local created, earliest = 0, nil
for i = 0, n - 1 do
  local b = 2 + i * 8
  local id = ARGV[b]
  if existing[i + 1] or seen[id] then
    out[i + 1] = 0
  else
    seen[id] = true
    out[i + 1] = 1
    created = created + 1
    local p = tonumber(ARGV[b + 1])
    local run_at, delay = tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3])
    local due = 0
    if run_at > now then due = run_at elseif delay > 0 then due = now + delay end
    local g = ''
    if haunted[i + 1] then
      gen = gen or new_generation()
      g = gen
    end
    local h = { s = 'p', p = p, att = 0, rc = 0, mr = tonumber(ARGV[b + 4]),
      to = tonumber(ARGV[b + 5]), cx = 0, stl = 0, ca = now, sa = due, st = 0, fa = 0, g = g,
      meta = with_args(ARGV[b + 6], ARGV[b + 7]) }
    recs[#recs + 1] = id
    recs[#recs + 1] = fmt(h)
    if due > 0 then
      sched[#sched + 1] = due
      sched[#sched + 1] = id
      if not earliest or due < earliest then earliest = due end
    else
      local r = ready[p + 1]
      r[#r + 1] = entry(id, h)
    end
  end
end

bulk('HSET', K_JOBS, recs, 2)
bulk('ZADD', K_SCHED, sched, 2)
local any_ready = false
for p = 1, 4 do
  if #ready[p] > 0 then
    bulk('RPUSH', K_PENDING[p], ready[p])
    any_ready = true
  end
end
if any_ready then mark_ready() end
if earliest then mark_due(earliest) end
incr('enqueued', created)
return out
