-- limits_lib.lua: rate and concurrency limits, after lib.lua (the contract is in
-- backend/limits.rs).
--
-- A job held to limits has lm = 1 in its state and its limiters in K_LIMITS[id], as its
-- enqueue wrote them: JSON [["r", name, max, per ms], ..., ["c", name, max]]. Per limiter
-- name L (keys.rs builds the same names):
--   BASE .. 'lim:' .. L   ZSET. A rate limiter: the starts in its window, member
--                         '<ms>:<id>:<attempt>', score the start. A concurrency limiter: the
--                         jobs holding a slot, member the id, score the lease deadline (the
--                         heartbeat moves it) or the end of a reservation.
--   BASE .. 'limp:' .. L  LIST of the jobs parked on it, oldest first (pending-list entries;
--                         a cancel takes its entry out).
--   K_LIMDUE[L]           when its parked jobs may go (a rate limiter's next slot).
--   K_LIMKEYS[L]          its bounds, 'r <max> <per ms>' or 'c <max>', while it is in use.
--   K_LIMBLOCK[L]         until when a handler's ctx.rate_limited holds it closed.
-- A parked job has status 'k'; the counter 'parked' counts them.

-- How long a slot freed for a parked job stays reserved for it (LIMIT_RESERVATION).
local RESERVE = 60000
-- The most stray entries (of jobs no longer parked: none is expected) one unpark passes
-- over, and the most jobs it moves (the rest is left to the next fetch).
local UNPARK_SKIP, UNPARK_MAX = 100, 1000
local MAX_RATE, MAX_PER, MAX_CONC = 100000, 86400000, 100000

local function lim_key(L) return BASE .. 'lim:' .. L end
local function limp_key(L) return BASE .. 'limp:' .. L end

-- The bounds of limiter entry l as K_LIMKEYS keeps them.
local function bounds(l)
  if l[1] == 'r' then return 'r ' .. l[3] .. ' ' .. l[4] end
  return 'c ' .. l[3]
end

local function whole(x, lo, hi)
  return type(x) == 'number' and x == math.floor(x) and x >= lo and x <= hi
end

-- The limiters of an enqueue's argument `v`, checked (nil if they are malformed).
local function check_limits(v)
  local ok, spec = pcall(cjson.decode, v)
  if not ok or type(spec) ~= 'table' or #spec == 0 or #spec > 9 then return nil end
  for i = 1, #spec do
    local l = spec[i]
    if type(l) ~= 'table' or type(l[2]) ~= 'string' or #l[2] == 0 or #l[2] > 600
        or not whole(l[3], 1, MAX_RATE) then
      return nil
    end
    if l[1] == 'r' then
      if not whole(l[4], 1, MAX_PER) then return nil end
    elseif l[1] ~= 'c' or not whole(l[3], 1, MAX_CONC) then
      return nil
    end
  end
  return spec
end

-- The limiters of the jobs `ids` (states `hs`) that have some: id -> list. A record whose
-- entry is missing or unreadable is held to none (it cannot be refused on their strength).
local function limiters_of(ids, hs)
  local want = {}
  for i = 1, #ids do
    if hs[i] and hs[i].lm == 1 then want[#want + 1] = ids[i] end
  end
  local out = {}
  if #want == 0 then return out end
  local vs = hmget(K_LIMITS, want)
  for i = 1, #want do
    if vs[i] then out[want[i]] = check_limits(vs[i]) end
  end
  return out
end

-- When rate limiter entry l opens for one more start (nil: now), pruning its window.
local function rate_refusal(l, now)
  local L, max, per = l[2], l[3], l[4]
  local block = tonumber(redis.call('HGET', K_LIMBLOCK, L))
  if block then
    if block > now then return block end
    redis.call('HDEL', K_LIMBLOCK, L)
  end
  local z = lim_key(L)
  redis.call('ZREMRANGEBYSCORE', z, '-inf', now - per)
  local c = redis.call('ZCARD', z)
  if c < max then return nil end
  -- The start whose leaving makes room (c > max after a declaration lowered max).
  local first = redis.call('ZRANGE', z, c - max, c - max, 'WITHSCORES')
  return tonumber(first[2]) + per
end

-- Whether job `id` may start now under its limiters `spec`; if so its starts are logged
-- and its slot taken (lease deadline `deadline`, attempt `att`). Else the entry that
-- refuses it and when it opens (false: when a slot frees). Slots held past their deadline
-- plus `grace` (reap takes those jobs back) are dropped first.
local function admit(id, att, spec, now, grace, deadline)
  for i = 1, #spec do
    local l = spec[i]
    if l[1] == 'r' then
      local due = rate_refusal(l, now)
      if due then return l, due end
    end
  end
  for i = 1, #spec do
    local l = spec[i]
    if l[1] == 'c' then
      local z = lim_key(l[2])
      redis.call('ZREMRANGEBYSCORE', z, '-inf', now - grace)
      if not redis.call('ZSCORE', z, id) and redis.call('ZCARD', z) >= l[3] then
        return l, false
      end
    end
  end
  for i = 1, #spec do
    local l = spec[i]
    if l[1] == 'r' then
      redis.call('ZADD', lim_key(l[2]), now, now .. ':' .. id .. ':' .. att)
    else
      redis.call('ZADD', lim_key(l[2]), deadline, id)
    end
    redis.call('HSET', K_LIMKEYS, l[2], bounds(l))
  end
  return nil
end

-- Parks job `id` (state `h`, written by the caller) on limiter entry l, at the tail of its
-- jobs (at the head with `first`); `due`: when the limiter opens (false: when a slot frees).
local function park(id, h, l, due, first)
  h.s = 'k'
  local L = l[2]
  redis.call(first and 'LPUSH' or 'RPUSH', limp_key(L), entry(id, h))
  redis.call('HSET', K_LIMKEYS, L, bounds(l))
  incr('parked', 1)
  if due then
    redis.call('ZADD', K_LIMDUE, 'LT', due, L)
    mark_due(due)
  end
end

-- Moves parked jobs of limiter L back to the head of their ready lists, in the order they
-- were parked, as many as it has slots free now; a concurrency limiter reserves each one
-- its slot. If jobs stay parked, sets when the limiter is looked at again.
local function unpark(L, now)
  local kind, max, per = string.match(redis.call('HGET', K_LIMKEYS, L) or '', '^(%a) (%d+) ?(%d*)$')
  local z, pl = lim_key(L), limp_key(L)
  max, per = tonumber(max), tonumber(per)
  local free = 1
  if kind == 'r' then
    local block = tonumber(redis.call('HGET', K_LIMBLOCK, L))
    if block and block > now then
      redis.call('ZADD', K_LIMDUE, block, L)
      mark_due(block)
      return
    end
    redis.call('ZREMRANGEBYSCORE', z, '-inf', now - per)
    free = max - redis.call('ZCARD', z)
  elseif kind == 'c' then
    free = max - redis.call('ZCARD', z)
  end
  free = math.min(free, UNPARK_MAX)
  local moved, skipped = {}, 0
  while #moved < free and skipped < UNPARK_SKIP do
    local e = redis.call('LPOP', pl)
    if not e then break end
    local id, g = split_entry(e)
    local h = parse(redis.call('HGET', K_JOBS, id))
    if h and h.s == 'k' and h.g == g then
      h.s = 'p'
      redis.call('HSET', K_JOBS, id, fmt(h))
      moved[#moved + 1] = { e, h }
      if kind == 'c' then redis.call('ZADD', z, now + RESERVE, id) end
    else
      skipped = skipped + 1
    end
  end
  local woken = {}
  for i = #moved, 1, -1 do
    local e, h = moved[i][1], moved[i][2]
    redis.call('LPUSH', pending_of(h.q, h.p + 1), e)
    woken[h.q] = true
  end
  for q in pairs(woken) do mark_ready(q) end
  incr('parked', -#moved)
  if redis.call('LLEN', pl) == 0 then
    redis.call('ZREM', K_LIMDUE, L)
    return
  end
  local due = nil
  if skipped >= UNPARK_SKIP or #moved >= UNPARK_MAX then
    due = now
  elseif kind == 'r' then
    -- Its next slot once the jobs moved have started (at about now).
    local c = redis.call('ZCARD', z)
    local i = c + #moved - max
    if i < 0 then
      due = now
    elseif i < c then
      due = tonumber(redis.call('ZRANGE', z, i, i, 'WITHSCORES')[2]) + per
    else
      due = now + per
    end
  end
  if due then
    redis.call('ZADD', K_LIMDUE, due, L)
    mark_due(due)
  else
    redis.call('ZREM', K_LIMDUE, L)
  end
end

-- The jobs `ids` (states `hs`) leave `running` (or give up a reservation): each frees its
-- concurrency slot, and a limiter with jobs parked gives the slot to the first of them.
local function free_slots(ids, hs)
  local specs = limiters_of(ids, hs)
  local now = now_ms()
  for i = 1, #ids do
    local spec = specs[ids[i]]
    if spec then
      for j = 1, #spec do
        local l = spec[j]
        if l[1] == 'c' and redis.call('ZREM', lim_key(l[2]), ids[i]) == 1
            and redis.call('LLEN', limp_key(l[2])) > 0 then
          unpark(l[2], now)
        end
      end
    end
  end
end

-- A running job's concurrency slot follows its lease (heartbeat, progress): `deadline`.
local function extend_slot(id, spec, deadline)
  for j = 1, #spec do
    if spec[j][1] == 'c' then redis.call('ZADD', lim_key(spec[j][2]), 'XX', deadline, id) end
  end
end

-- Takes parked job `id` (state `h`) out of its limiter's list (cancel.lua): it is parked on
-- one of its limiters, which one is not kept.
local function unpark_remove(id, h)
  local spec = limiters_of({ id }, { h })[id] or {}
  local e = entry(id, h)
  for i = 1, #spec do
    if redis.call('LREM', limp_key(spec[i][2]), 1, e) > 0 then break end
  end
  incr('parked', -1)
end

-- The jobs `ids` (states `hs`) go back to the head of their lists (release, a reap's
-- requeue): each keeps its concurrency slot, as a reservation, so that it runs before the
-- jobs parked behind it (with max = 1, in their order).
local function keep_slots(ids, hs)
  local specs = limiters_of(ids, hs)
  local untl = now_ms() + RESERVE
  for i = 1, #ids do
    local spec = specs[ids[i]]
    if spec then
      for j = 1, #spec do
        if spec[j][1] == 'c' then redis.call('ZADD', lim_key(spec[j][2]), 'XX', untl, ids[i]) end
      end
    end
  end
end

-- Unparks the jobs of up to `limit` limiters whose time has come (fetch's first step).
-- Returns how many limiters it looked at.
local function unpark_due(now, limit)
  if limit <= 0 then return 0 end
  local due = redis.call('ZRANGEBYSCORE', K_LIMDUE, '-inf', now, 'LIMIT', 0, limit)
  for i = 1, #due do
    redis.call('ZREM', K_LIMDUE, due[i])
    unpark(due[i], now)
  end
  return #due
end
