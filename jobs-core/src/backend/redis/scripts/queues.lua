-- queues: every queue with its ready jobs per priority and whether it is paused (read only;
-- O(queues)). The default queue first, then each named queue in K_QUEUES.
-- Returns: { name ('default' for the default queue), 'p' (paused) or 'a', ready jobs of
--          priority 0, 1, 2, 3 (their ghosts taken off), ... per queue }
local out = {}
local function add(q, state)
  out[#out + 1] = queue_field(q)
  out[#out + 1] = state or 'a'
  local ready = ready_counts(q)
  for p = 1, 4 do out[#out + 1] = ready[p] end
end
add('', redis.call('HGET', K_QUEUES, 'default'))
local all = redis.call('HGETALL', K_QUEUES)
for i = 1, #all, 2 do
  if all[i] ~= 'default' and valid_queue(all[i]) then add(all[i], all[i + 1]) end
end
return out
