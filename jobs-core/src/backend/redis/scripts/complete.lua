-- complete: marks deliveries completed with their results.
-- ARGV[1]: result ttl ms, ARGV[2]: purge limit, ARGV[3]: k, then k triples: id, attempt, result
-- Returns: one integer per item: 1 completed, 2 already completed by this attempt, 3 cancelled
-- (a cancel was requested while it ran: it ends cancelled, whatever the handler returned;
-- also for a repeat once it is), 0 stale.
local ttl, purge_k, k = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local now = now_ms()
local ids = {}
for i = 1, k do ids[i] = ARGV[1 + 3 * i] end
local recs = hmget(K_JOBS, ids)
local out, upd, res, done, fin, held = {}, {}, {}, {}, {}, {}
-- The jobs that leave `running` and their states, for their concurrency slots.
local left, left_h = {}, {}
local completed, cancelled = 0, 0
-- The state an earlier item of this batch left (an id acked twice in one batch): later
-- items must see it, not the record as it was read.
local latest = {}
for i = 1, k do
  local id, att = ids[i], tonumber(ARGV[2 + 3 * i])
  local h = latest[id] or parse(recs[i])
  if not h or h.att ~= att then
    out[i] = 0
  elseif h.s == 'c' then
    out[i] = 2
  elseif h.s == 'x' then
    out[i] = 3
  elseif h.s ~= 'r' then
    out[i] = 0
  elseif h.cx == 1 then
    -- Asked to cancel: the job ends cancelled, without a result (as `finish` would).
    h.s = 'x'
    h.fa = now
    if h.uq == 1 then held[#held + 1] = id; h.uq = 0 end
    if h.lm == 1 then left[#left + 1] = id; left_h[#left_h + 1] = h end
    latest[id] = h
    upd[#upd + 1] = id
    upd[#upd + 1] = fmt(h)
    done[#done + 1] = id
    fin[#fin + 1] = now + ttl
    fin[#fin + 1] = id
    cancelled = cancelled + 1
    out[i] = 3
  else
    h.s = 'c'
    h.fa = now
    if h.uq == 1 then held[#held + 1] = id; h.uq = 0 end
    if h.lm == 1 then left[#left + 1] = id; left_h[#left_h + 1] = h end
    latest[id] = h
    upd[#upd + 1] = id
    upd[#upd + 1] = fmt(h)
    res[#res + 1] = id
    res[#res + 1] = ARGV[3 + 3 * i]
    done[#done + 1] = id
    fin[#fin + 1] = now + ttl
    fin[#fin + 1] = id
    completed = completed + 1
    out[i] = 1
  end
end
bulk('HSET', K_JOBS, upd, 2)
-- Their uniqueness locks, released in the same step (see UNIQUE in lib.lua).
if #held > 0 then release_locks(held, hmget(K_UJOBS, held)) end
bulk('HSET', K_RESULTS, res, 2)
bulk('ZREM', K_ACTIVE, done)
-- Their concurrency slots, freed in the same step (limits_lib.lua).
if #left > 0 then free_slots(left, left_h) end
bulk('ZADD', K_FINISHED, fin, 2)
incr('completed', completed)
incr('cancelled', cancelled)

-- Retention without a timer: every completion purges a few expired records.
purge_finished(now, purge_k)
return out
