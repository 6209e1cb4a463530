-- reap: takes back jobs whose lease lapsed (their worker died, hung or lost Redis).
-- ARGV[1]: interval ms (0: no lock), ARGV[2]: grace ms, ARGV[3]: limit, ARGV[4]: max stalls,
-- ARGV[5]: worker ttl ms, ARGV[6..12]: base ms, cap ms, jitter ms, dead_max, dead_ttl ms,
-- result ttl ms, trim limit (the jitter there is unused), ARGV[13]: timeout error text,
-- ARGV[14]: worker-lost error text, ARGV[15]: jitter bound ms, ARGV[16]: seed, 1..2^31-2
-- Returns: { ran 0/1, requeued, failed, cancelled }
local interval, grace, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local max_stalls, worker_ttl = tonumber(ARGV[4]), tonumber(ARGV[5])
local o = policy(6)
local jitter_max, seed = tonumber(ARGV[15]), tonumber(ARGV[16])
local now = now_ms()

-- A jitter per job failed here (jobs lost together must not all come back at one instant),
-- in [0, jitter_max), from a Park-Miller generator seeded by the caller: exact in doubles.
local function fail_lost(id, h, err)
  seed = (seed * 48271) % 2147483647
  o.jitter = math.floor((seed - 1) / 2147483646 * jitter_max)
  fail_job(id, h, err, true, now, o)
end
-- Every process runs reap on a timer; the lock keeps it to one run per interval in all.
if interval > 0 and not redis.call('SET', K_REAPLOCK, '1', 'NX', 'PX', interval) then
  return { 0, 0, 0, 0 }
end
local requeued, failed, cancelled = 0, 0, 0
local ids = redis.call('ZRANGEBYSCORE', K_ACTIVE, '-inf', now - grace, 'LIMIT', 0, limit)
local recs = hmget(K_JOBS, ids)
local woken = {}
for i = 1, #ids do
  local id = ids[i]
  local h, why = parse(recs[i])
  redis.call('ZREM', K_ACTIVE, id)
  if why then
    dead_letter_unreadable(id, why, now)
  elseif not h or h.s ~= 'r' then
    -- An index entry without a running job behind it: nothing to take back.
  else
    -- Its concurrency slot: freed, or kept by a job requeued at the head (limits_lib.lua).
    local requeue = h.cx ~= 1 and now < h.st + h.to + grace
      and h.stl + 1 <= math.min(max_stalls, 65534)
    if requeue then keep_slots({ id }, { h }) else free_slots({ id }, { h }) end
    if h.cx == 1 then
      finish(id, h, 'x', now, o.ttl)
      incr('cancelled', 1)
      cancelled = cancelled + 1
    elseif now >= h.st + h.to + grace then
      fail_lost(id, h, ARGV[13])
      failed = failed + 1
    else
      incr('stalled', 1)
      h.stl = h.stl + 1
      -- (The stored count saturates at 65,535: a higher limit acts as 65,534.)
      if h.stl > math.min(max_stalls, 65534) then
        -- Poison pill: a job that keeps killing its worker counts as a failed attempt.
        fail_lost(id, h, ARGV[14])
        failed = failed + 1
      else
        h.s = 'p'
        redis.call('HSET', K_JOBS, id, fmt(h))
        redis.call('LPUSH', pending_of(h.q, h.p + 1), entry(id, h))
        requeued = requeued + 1
        woken[h.q] = true
      end
    end
  end
end
for q in pairs(woken) do mark_ready(q) end

-- The DLQ's limits hold even when no job dies: the reaper's timer trims it (bounded).
trim_dead(now, o.dead_max, o.dead_ttl, o.trim)

local gone = redis.call('ZRANGEBYSCORE', K_WORKERS, '-inf', '(' .. (now - worker_ttl))
if #gone > 0 then
  bulk('ZREM', K_WORKERS, gone)
  bulk('HDEL', K_WINFO, gone)
end
return { 1, requeued, failed, cancelled }
