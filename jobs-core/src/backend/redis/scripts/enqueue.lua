-- enqueue: creates jobs, all in one atomic step.
-- ARGV[1]: n; then n groups of 13: id, priority 0..3, run_at ms (0: none), delay ms (0: none),
--          max_retries, timeout ms, meta JSON, payload JSON, uniqueness key ('' for none),
--          its window ms, its mode: 'd' (held until done) or 's' (until started), then 'k'
--          (a duplicate is kept out) or 'r' (a duplicate's args replace the holder's),
--          its named queue ('' for the default queue), its limiters (JSON, see
--          limits_lib.lua; '' for none)
-- Returns: one reply per job: 1 created, 0 duplicate (id exists, or repeats in the batch),
-- or, for a job whose uniqueness key is held, the holder's id prefixed 'u' (kept out) or 'r'
-- (the holder, not started yet, took its args).
local n = tonumber(ARGV[1])
local G = 13
local now = now_ms()
-- Check every argument before the first write: a script that errors half-way would leave
-- half a batch behind (Redis does not roll scripts back).
local MODES = { dk = true, dr = true, sk = true, sr = true }
-- A window is whole milliseconds, at least one, at most ten years (the client's bound),
-- so that its expiry is written as digits.
local function window_ok(w)
  w = tonumber(w)
  return w and w >= 1 and w <= 315360000000 and w == math.floor(w)
end
for i = 0, n - 1 do
  local b = 2 + i * G
  local p = tonumber(ARGV[b + 1])
  if not p or p < 0 or p > 3 or not tonumber(ARGV[b + 2]) or not tonumber(ARGV[b + 3])
      or not fits_hot(tonumber(ARGV[b + 4]), tonumber(ARGV[b + 5]))
      or (ARGV[b + 8] ~= '' and not (window_ok(ARGV[b + 9]) and MODES[ARGV[b + 10]]))
      or (ARGV[b + 11] ~= '' and not valid_queue(ARGV[b + 11]))
      or (ARGV[b + 12] ~= '' and not check_limits(ARGV[b + 12])) then
    return redis.error_reply('ERR enqueue: malformed arguments for job ' .. tostring(i))
  end
end

local ids = {}
for i = 0, n - 1 do ids[i + 1] = ARGV[2 + i * G] end
local existing = hmget(K_JOBS, ids)
-- An id whose earlier job left a ghost in a list (see lib.lua) gets a generation. Almost
-- always there are no ghosts at all, and this costs one EXISTS.
local haunted = {}
if redis.call('EXISTS', K_GHOSTS) == 1 then haunted = hmget(K_GHOSTS, ids) end
local gen = nil

-- The holder of uniqueness key `key`, if a job holds it in its window: { id, h, at } where
-- `at` is the job's place in `recs` when this batch creates it. Read once per key per call;
-- `held` then follows the batch's own changes.
local held, lockv = {}, {}
do
  -- Every key's lock, read in one call (none when the batch has no keys).
  local keys = {}
  for i = 0, n - 1 do
    local key = ARGV[2 + i * G + 8]
    if key ~= '' then keys[#keys + 1] = key end
  end
  if #keys > 0 then
    local vs = hmget(K_UNIQUE, keys)
    for i = 1, #keys do lockv[keys[i]] = vs[i] or false end
  end
end
local function holder(key)
  local c = held[key]
  if c ~= nil then return c or nil end
  held[key] = false
  local v = lockv[key]
  if not v then return nil end
  local exp, hid = string.match(v, '^(%d+) (.+)$')
  if not exp or tonumber(exp) <= now then return nil end
  -- Locks are released by every transition out of the window; the holder's own state is
  -- checked all the same, so that a lock left by a record that vanished excludes nothing.
  -- (An older version that could not read the holder's record dead-lettered it as it was.)
  local h = parse(redis.call('HGET', K_JOBS, hid))
  if not h or h.uq == 0 or not (h.s == 'p' or h.s == 'k' or h.s == 'r' or h.s == 'y')
      or redis.call('ZSCORE', K_DEAD, hid) then return nil end
  c = { id = hid, h = h }
  held[key] = c
  return c
end

local out, seen = {}, {}
local recs, sched, locks, holds = {}, {}, {}, {}
local replaced = {}
-- id, limiters: the jobs held to rate or concurrency limits.
local limited = {}
local named = {}
-- ready[q][p]: the entries going to queue q's list of priority p.
local ready = {}
local created, earliest = 0, nil
for i = 0, n - 1 do
  local b = 2 + i * G
  local id = ARGV[b]
  local key, mode = ARGV[b + 8], ARGV[b + 10]
  local c = nil
  if key ~= '' and not (existing[i + 1] or seen[id]) then c = holder(key) end
  local replace = string.sub(mode, 2) == 'r'
  if existing[i + 1] or seen[id] then
    out[i + 1] = 0
  elseif c and replace and (c.h.s == 'p' or c.h.s == 'k') then
    -- Replace (debounce): the holder, not started yet, takes these arguments.
    c.h.meta = with_args(drop_args(c.h.meta), ARGV[b + 7])
    if c.at then
      recs[c.at] = fmt(c.h)
    else
      replaced[c.id] = c.h
    end
    out[i + 1] = 'r' .. c.id
  elseif c and not replace then
    -- Kept out: the holder is in its window.
    out[i + 1] = 'u' .. c.id
  else
    -- A new job (with 'replace', also when the holder has started: it takes the lock, so
    -- that a key has at most one job queued and one running).
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
    local uq = 0
    if key ~= '' then uq = 1 end
    local q = ARGV[b + 11]
    local lm = 0
    if ARGV[b + 12] ~= '' then
      lm = 1
      limited[#limited + 1] = id
      limited[#limited + 1] = ARGV[b + 12]
    end
    local h = { s = 'p', p = p, att = 0, rc = 0, mr = tonumber(ARGV[b + 4]),
      to = tonumber(ARGV[b + 5]), cx = 0, stl = 0, ca = now, sa = due, st = 0, fa = 0, g = g,
      uq = uq, q = q, lm = lm, meta = with_args(ARGV[b + 6], ARGV[b + 7]) }
    if q ~= '' then named[q] = true end
    recs[#recs + 1] = id
    recs[#recs + 1] = fmt(h)
    if key ~= '' then
      locks[#locks + 1] = key
      locks[#locks + 1] = (now + tonumber(ARGV[b + 9])) .. ' ' .. id
      holds[#holds + 1] = id
      holds[#holds + 1] = string.sub(mode, 1, 1) .. key
      held[key] = { id = id, h = h, at = #recs }
    end
    if due > 0 then
      sched[#sched + 1] = due
      sched[#sched + 1] = id
      if not earliest or due < earliest then earliest = due end
    else
      local rq = ready[q]
      if not rq then
        rq = { {}, {}, {}, {} }
        ready[q] = rq
      end
      local r = rq[p + 1]
      r[#r + 1] = entry(id, h)
    end
  end
end

for hid, h in pairs(replaced) do recs[#recs + 1] = hid; recs[#recs + 1] = fmt(h) end
bulk('HSET', K_JOBS, recs, 2)
bulk('HSET', K_UNIQUE, locks, 2)
bulk('HSET', K_UJOBS, holds, 2)
bulk('HSET', K_LIMITS, limited, 2)
bulk('ZADD', K_SCHED, sched, 2)
for q, rq in pairs(ready) do
  for p = 1, 4 do
    if #rq[p] > 0 then bulk('RPUSH', pending_of(q, p), rq[p]) end
  end
  mark_ready(q)
end
-- Every named queue a job went to is listed (K_QUEUES), active unless paused already.
for q in pairs(named) do redis.call('HSETNX', K_QUEUES, q, 'a') end
if earliest then mark_due(earliest) end
incr('enqueued', created)
return out
