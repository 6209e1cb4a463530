-- progress: a running job's progress report, which also extends its lease (a heartbeat of
-- one delivery).
-- ARGV[1]: id, ARGV[2]: attempt, ARGV[3]: progress JSON, ARGV[4]: lease ms, ARGV[5]: grace ms
-- Returns: 1 recorded, 0 stale (the delivery is no longer the caller's: nothing changes).
local id, att = ARGV[1], tonumber(ARGV[2])
local lease, grace = tonumber(ARGV[4]), tonumber(ARGV[5])
local h = parse(redis.call('HGET', K_JOBS, id))
if not h or h.s ~= 'r' or h.att ~= att then return 0 end
local now = now_ms()
redis.call('HSET', K_PROGRESS, id, ARGV[3])
-- Never past started + timeout + grace, as heartbeat: a hung handler still loses its lease.
local deadline = math.min(now + lease, h.st + h.to + grace)
redis.call('ZADD', K_ACTIVE, 'XX', deadline, id)
-- Its concurrency slot follows (limits_lib.lua).
local spec = limiters_of({ id }, { h })[id]
if spec then extend_slot(id, spec, deadline) end
return 1
