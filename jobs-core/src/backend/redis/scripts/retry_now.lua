-- retry_now: a retrying job (waiting for its backoff) becomes ready at once: pending at the
-- tail of its priority, due now (`scheduled_at`), its history kept.
-- ARGV[1]: id
-- Returns: {'OK'} | {'NOTFOUND'} | {'STATE', status letter}
local id = ARGV[1]
local h = parse(redis.call('HGET', K_JOBS, id))
if not h then return { 'NOTFOUND' } end
if h.s ~= 'y' or redis.call('ZREM', K_RETRY, id) == 0 then return { 'STATE', h.s } end
h.s = 'p'
h.sa = now_ms()
redis.call('HSET', K_JOBS, id, fmt(h))
redis.call('RPUSH', pending_of(h.q, h.p + 1), entry(id, h))
mark_ready(h.q)
return { 'OK' }
