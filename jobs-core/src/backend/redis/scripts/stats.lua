-- stats: every count the stats combine, read at one moment (read only): the list lengths
-- and the ghost counts subtracted from them must not come from either side of a fetch.
-- Returns: { LLEN pending:0..3 (plus the ready jobs of every named queue, their ghosts
--          taken off here: the client takes off the default queue's), ZCARD scheduled, retry, active, dead, HLEN unique (the
--          uniqueness locks held), then the counters HASH as field, value, field, value, ... }
local out = {}
for p = 1, 4 do out[p] = redis.call('LLEN', K_PENDING[p]) end
-- O(named queues): each one's four lists and ghost counts.
local named = redis.call('HKEYS', K_QUEUES)
for i = 1, #named do
  local q = named[i]
  if q ~= 'default' and valid_queue(q) then
    local ready = ready_counts(q)
    for p = 1, 4 do out[p] = out[p] + ready[p] end
  end
end
out[5] = redis.call('ZCARD', K_SCHED)
out[6] = redis.call('ZCARD', K_RETRY)
out[7] = redis.call('ZCARD', K_ACTIVE)
out[8] = redis.call('ZCARD', K_DEAD)
out[9] = redis.call('HLEN', K_UNIQUE)
local c = redis.call('HGETALL', K_COUNTERS)
for i = 1, #c do out[9 + i] = c[i] end
return out
