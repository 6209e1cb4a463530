-- queue_pause: pauses or resumes a queue for every process: a fetch skips a paused queue's
-- lists (its jobs stay in them, in order); enqueues and promotions into it go on.
-- ARGV[1]: the queue ('' for the default queue), ARGV[2]: '1' pause, '0' resume
-- Returns: 1 if this call changed it, 0 if it was so already.
local q, pause = ARGV[1], ARGV[2] == '1'
if q ~= '' and not valid_queue(q) then
  return redis.error_reply('ERR queue_pause: invalid queue name')
end
local field = queue_field(q)
local was = redis.call('HGET', K_QUEUES, field)
if pause then
  if was == 'p' then return 0 end
  redis.call('HSET', K_QUEUES, field, 'p')
  return 1
end
if was ~= 'p' then return 0 end
redis.call('HSET', K_QUEUES, field, 'a')
-- Its workers wait on its marker: wake one, which wakes the next while work is left.
mark_ready(q)
return 1
