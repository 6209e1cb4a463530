-- delete: removes a finished job for good (completed, cancelled, or dead, readable or not):
-- its record, result, error and progress, and its retention or dead-letter index entry.
-- A job that may still run (pending, delayed, retrying, running) is refused: cancel first.
-- ARGV[1]: id
-- Returns: {'OK'} | {'NOTFOUND'} | {'STATE', status letter}
local id = ARGV[1]
local rec = redis.call('HGET', K_JOBS, id)
if not rec then return { 'NOTFOUND' } end
local h = parse(rec)
if h then
  if h.s == 'c' or h.s == 'x' then
    redis.call('ZREM', K_FINISHED, id)
  elseif h.s == 'f' then
    redis.call('ZREM', K_DEAD, id)
  else
    return { 'STATE', h.s }
  end
elseif redis.call('ZREM', K_DEAD, id) == 0 then
  -- An unreadable record outside the dead-letter queue: not ours to judge.
  return { 'STATE', 'f' }
end
-- A cancelled job's leftover queue entry (a ghost) stays counted until a fetch skips it,
-- as after a purge.
delete_records({ id })
return { 'OK' }
