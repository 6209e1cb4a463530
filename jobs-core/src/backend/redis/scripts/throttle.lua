-- throttle: a handler's ctx.rate_limited(delay): the delivery goes back without using a
-- retry, and its rate limiters close for `delay` (backend/limits.rs).
-- ARGV[1]: id, ARGV[2]: attempt, ARGV[3]: delay ms, ARGV[4]: result ttl ms
-- Returns: {'PARKED', until ms} | {'DELAYED', due ms} | {'CANCELLED'} | {'STALE'}
local id, att, delay, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
if not delay or delay < 1 or delay ~= math.floor(delay) or not ttl then
  return redis.error_reply('ERR throttle: malformed arguments')
end
local now = now_ms()
local h = parse(redis.call('HGET', K_JOBS, id))
if not h or h.s ~= 'r' or h.att ~= att then return { 'STALE' } end
redis.call('ZREM', K_ACTIVE, id)
free_slots({ id }, { h })
if h.cx == 1 then
  finish(id, h, 'x', now, ttl)
  incr('cancelled', 1)
  return { 'CANCELLED' }
end
incr('throttled', 1)
local untl = now + delay
local spec = limiters_of({ id }, { h })[id] or {}
local first, first_until = nil, untl
for i = 1, #spec do
  local l = spec[i]
  if l[1] == 'r' then
    local b = tonumber(redis.call('HGET', K_LIMBLOCK, l[2]))
    if not b or b < untl then
      redis.call('HSET', K_LIMBLOCK, l[2], untl)
      b = untl
    end
    if not first then first, first_until = l, b end
  end
end
if first then
  park(id, h, first, first_until, true)
  redis.call('HSET', K_JOBS, id, fmt(h))
  return { 'PARKED', first_until }
end
h.s = 'p'
h.sa = untl
redis.call('HSET', K_JOBS, id, fmt(h))
redis.call('ZADD', K_SCHED, untl, id)
mark_due(untl)
return { 'DELAYED', untl }
