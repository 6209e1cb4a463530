-- fail: records a failed attempt: retry with backoff, or dead-letter.
-- ARGV[1]: id, ARGV[2]: attempt, ARGV[3]: error, ARGV[4]: retryable (0/1),
-- ARGV[5..11]: base ms, cap ms, jitter ms, dead_max, dead_ttl ms, result ttl ms, trim limit,
-- ARGV[12]: the delay the handler asked for before the next attempt, ms ('' for the backoff)
-- Returns: {'RETRY', due ms} | {'DEAD'} | {'CANCELLED'} | {'STALE'}
local id, att = ARGV[1], tonumber(ARGV[2])
local now = now_ms()
local h = parse(redis.call('HGET', K_JOBS, id))
if not h or h.s ~= 'r' or h.att ~= att then return { 'STALE' } end
redis.call('ZREM', K_ACTIVE, id)
free_slots({ id }, { h })
return fail_job(id, h, ARGV[3], ARGV[4] == '1', now, policy(5), tonumber(ARGV[12]))
