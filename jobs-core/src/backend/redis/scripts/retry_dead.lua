-- retry_dead: puts a dead-letter job back at the tail of its priority, its stall count reset.
-- ARGV[1]: id
-- Returns: {'OK'} | {'NOTFOUND'} | {'STATE', status letter}
local id = ARGV[1]
local h = parse(redis.call('HGET', K_JOBS, id))
if not h then return { 'NOTFOUND' } end
-- A member of the dead-letter queue is failed, or (dead-lettered because a process could not
-- read its record: an older version meeting a newer record) in the state it had then; either
-- goes back. A job that is not in the queue is left as it is.
if h.s == 'c' or h.s == 'x' or redis.call('ZREM', K_DEAD, id) == 0 then
  return { 'STATE', h.s }
end
-- One that was running (or retrying) may still sit in that index.
redis.call('ZREM', K_ACTIVE, id)
redis.call('ZREM', K_RETRY, id)
redis.call('ZREM', K_SCHED, id)
h.s = 'p'
h.fa = 0
-- A fresh start for the poison-pill guard: the stalls that killed it are not held against
-- the attempt the operator asked for.
h.stl = 0
redis.call('HSET', K_JOBS, id, fmt(h))
redis.call('RPUSH', pending_of(h.q, h.p + 1), entry(id, h))
mark_ready(h.q)
return { 'OK' }
