-- sched_lib.lua: prepended, after lib.lua, to the sched_*.lua scripts (see scripts.rs).
--
-- A schedule (HASH cron, field = schedule name) is "<state>|<definition JSON>". The state is
-- what the scripts test and change, read with one string.match and no JSON decoder, as for
-- job records:
--   <en>:<runs>:<last>:<hash>:<job>:<gen>
--   en    1 enabled, 0 disabled        runs  jobs enqueued so far
--   last  ms of the last enqueue (0 = never)
--   hash  the definition's hash (hex), written by the client
--   job   id of the last job enqueued ('' = none)
--   gen   the definition's generation: 0 when created, +1 at each upsert that changes the
--         definition or the flag and at each enable; the ids of its ticks' jobs include it
--         (records of earlier builds have no ':<gen>' and read as generation 0)
-- The definition JSON is written and read by the client only. The next run of a schedule is
-- its score in cron_due; a disabled schedule, or a one-time schedule that has fired, has none.

local function sched_parse(rec)
  if not rec then return nil end
  local en, runs, last, hash, job, gen, j = string.match(rec,
    '^([01]):(%d+):(%d+):(%x+):([%x%-]*):(%d+)|()')
  if not en then
    en, runs, last, hash, job, j = string.match(rec, '^([01]):(%d+):(%d+):(%x+):([%x%-]*)|()')
    gen = '0'
  end
  if not en then return nil end
  return { en = en, runs = tonumber(runs), last = tonumber(last), hash = hash, job = job,
    gen = tonumber(gen), def = string.sub(rec, j) }
end

local function sched_fmt(c)
  return string.format('%s:%d:%d:%s:%s:%d|', c.en, c.runs, c.last, c.hash, c.job, c.gen)
    .. c.def
end

-- The schedule's next run in ms, or -1 if it has none.
local function sched_next(name)
  local s = redis.call('ZSCORE', K_CRONDUE, name)
  if s then return tonumber(s) end
  return -1
end
