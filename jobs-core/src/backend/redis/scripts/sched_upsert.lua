-- sched_upsert: creates or updates a schedule (contract: backend/mod.rs, "Schedules").
-- ARGV[1]: name, ARGV[2]: definition JSON, ARGV[3]: definition hash (hex),
-- ARGV[4]: enabled '1' | '0' | '' (keep the current flag; a new schedule is enabled),
-- ARGV[5]: first next run ms ('' = none)
-- Returns: 'CREATED' | 'UPDATED' | 'KEPT'
local name, def, hash, want = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local first = tonumber(ARGV[5])

local c = sched_parse(redis.call('HGET', K_CRON, name))
-- A record this version cannot read is replaced as if new: refusing would leave the
-- schedule stuck, and its state (counts) is only informative.
if not c then
  local en = '1'
  if want ~= '' then en = want end
  redis.call('HSET', K_CRON, name,
    sched_fmt({ en = en, runs = 0, last = 0, hash = hash, job = '', gen = 0, def = def }))
  redis.call('ZREM', K_CRONDUE, name)
  if en == '1' and first then redis.call('ZADD', K_CRONDUE, first, name) end
  return 'CREATED'
end

local en = c.en
if want ~= '' then en = want end
-- Same definition, same flag: keep everything, above all the next run. Every process
-- upserts its declared schedules at start; this is what keeps that harmless.
if c.hash == hash and en == c.en then return 'KEPT' end

local reset = c.hash ~= hash or c.en == '0'
-- A new generation: a tick it fires again (a one-time schedule's instant) gets a new job id.
c.en, c.hash, c.def, c.gen = en, hash, def, c.gen + 1
redis.call('HSET', K_CRON, name, sched_fmt(c))
if en == '0' then
  redis.call('ZREM', K_CRONDUE, name)
elseif reset then
  if first then
    redis.call('ZADD', K_CRONDUE, first, name)
  else
    redis.call('ZREM', K_CRONDUE, name)
  end
end
return 'UPDATED'
