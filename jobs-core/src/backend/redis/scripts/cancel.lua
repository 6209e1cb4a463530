-- cancel: a waiting job is cancelled for good; a running one is flagged for its worker.
-- ARGV[1]: id, ARGV[2]: result ttl ms, ARGV[3]: cancel log cap
-- Returns: {'CANCELLED'} | {'RUNNING'} | {'NOTFOUND'} | {'STATE', status letter}
local id, ttl, cap = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local h = parse(redis.call('HGET', K_JOBS, id))
if not h then return { 'NOTFOUND' } end
local now = now_ms()
if h.s == 'p' then
  -- A delayed job leaves its ZSET in O(log n). A ready one stays in its list as a ghost
  -- (O(1) instead of LREM's O(n)); fetch skips it and the ghost counts keep stats exact.
  if redis.call('ZREM', K_SCHED, id) == 0 then
    incr(ghost_field(h.q, h.p + 1), 1)
    redis.call('HINCRBY', K_GHOSTS, id, 1)
  end
  -- A slot reserved for it goes to the next job parked (limits_lib.lua).
  free_slots({ id }, { h })
elseif h.s == 'k' then
  -- Parked: out of its limiter's list (LREM: O(the jobs parked on that key), off the hot
  -- path), so that parked counts stay exact.
  unpark_remove(id, h)
elseif h.s == 'y' then
  redis.call('ZREM', K_RETRY, id)
elseif h.s == 'r' then
  if h.cx == 0 then
    h.cx = 1
    redis.call('HSET', K_JOBS, id, fmt(h))
  end
  -- The notice its worker blocks on (XREAD), so that the handler is told at once rather
  -- than at the next heartbeat. Logged on every request: a repeat costs one entry.
  redis.call('XADD', K_CANCELS, 'MAXLEN', '~', cap, '*', 'i', id, 'a', h.att)
  return { 'RUNNING' }
else
  return { 'STATE', h.s }
end
finish(id, h, 'x', now, ttl)
incr('cancelled', 1)
return { 'CANCELLED' }
