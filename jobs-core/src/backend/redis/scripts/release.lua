-- release: gives running jobs back (graceful shutdown), to the head of their priority.
-- ARGV[1]: result ttl ms, ARGV[2]: k, then k pairs: id, attempt
-- Returns: how many were released (or cancelled, if a cancel had been asked).
local ttl, k = tonumber(ARGV[1]), tonumber(ARGV[2])
local now = now_ms()
local ids = {}
for i = 1, k do ids[i] = ARGV[1 + 2 * i] end
local recs = hmget(K_JOBS, ids)
local n, woken = 0, {}
-- Walk backwards and push each to the head: the first lease given ends up first in line.
for i = k, 1, -1 do
  local id = ids[i]
  local h, why = parse(recs[i])
  if why then
    -- Its attempt cannot be checked: only a job that is running (in `active`) is taken.
    if redis.call('ZREM', K_ACTIVE, id) == 1 then dead_letter_unreadable(id, why, now) end
  elseif h and h.s == 'r' and h.att == tonumber(ARGV[2 + 2 * i]) then
    redis.call('ZREM', K_ACTIVE, id)
    if h.cx == 1 then
      free_slots({ id }, { h })
      finish(id, h, 'x', now, ttl)
      incr('cancelled', 1)
    else
      -- Back at the head: its concurrency slot stays its own (limits_lib.lua).
      keep_slots({ id }, { h })
      h.s = 'p'
      redis.call('HSET', K_JOBS, id, fmt(h))
      redis.call('LPUSH', pending_of(h.q, h.p + 1), entry(id, h))
      woken[h.q] = true
    end
    -- A repeated id in the same call must not be released twice.
    for j = 1, i - 1 do if ids[j] == id then recs[j] = nil end end
    n = n + 1
  end
end
for q in pairs(woken) do mark_ready(q) end
return n
