-- lib.lua: prepended to every script, or defined once in the function library (scripts.rs).
-- Names the fixed KEYS list, reads the server clock, and holds the transitions that several
-- scripts share (fail, finish, trim).
--
-- KEYS (the same 25 for every script, in keys.rs order):
--   1 jobs  2 results  3 errors  4..7 pending:0..3  8 scheduled  9 retry  10 active
--   11 dead  12 finished  13 marker  14 counters  15 workers  16 worker_info  17 reap_lock
--   18 cron  19 cron_due  20 throughput  21 cancels  22 ghosts  23 unique  24 unique_jobs
--   25 progress  26 due  27 queues  28 limits  29 lim_due  30 lim_keys  31 lim_block
--
-- A named queue's own keys (QUEUES below) are the only ones built here, from the same
-- base, so in the same hash slot: keys.rs builds the same names for the client.
--
-- A job record (HASH jobs, field = id) is "<hot state><meta JSON>\n<args JSON>"; the args
-- are kept as long as the record, finished or not (an operator looking at a completed or
-- cancelled job sees what it ran with). (Compact JSON never holds a raw
-- newline, so the first one splits meta from args. One hash entry per job instead of two
-- saves about 100 bytes of Redis memory per queued job.) The hot state is what scripts test
-- and change: fixed-width binary (HOT below), read with one struct.unpack and no JSON
-- decoder; records of earlier versions hold it as text, "<s><p>:<att>:...:<fa>[:<g>]|",
-- which is still read. Its fields:
--   s   status: p pending, r running, c completed, f failed, x cancelled, y retrying,
--       k parked (pending, waiting for a slot of a rate or concurrency limiter; limits_lib.lua)
--   p   priority 0..3      att  deliveries so far (the fencing token)
--   rc  retries used       mr   max retries        to  timeout ms
--   cx  1 = cancel asked   stl  times taken back from a lost worker
--   ca/sa/st/fa  created / scheduled / started / finished, ms (0 = unset)
--   g   the enqueue's generation, only when its id still has ghosts (see GHOST below)
--   uq  1 while it holds a uniqueness lock (see UNIQUE below), else 0
--   q   its named queue, '' for the default queue (see QUEUES below)
--   lm  1 if it is held to rate or concurrency limits (see limits_lib.lua), else 0
-- The meta JSON is written by the client and never decoded here (but for the one prefix
-- backoff() reads: a job's own retry backoff).
--
-- A pending list entry is the job's id, or "<id>/<g>" for a record that has a generation:
-- an entry belongs to the record only if their generations are equal.

-- The key names, set by bind() at the start of every call (scripts.rs: an EVAL script
-- calls it after this prelude; in the function library, which defines all this once, each
-- function calls it first, which is safe because Redis runs one call at a time). A call
-- declares one key, KEYS[1], the namespace's jobs hash (for its hash slot; and KEYS[2], a
-- request key, for a call that may be retried); every other name is BASE .. suffix, in the
-- order of SUFFIXES (keys.rs, which the library's source is prefixed with). Every key of a
-- namespace has its hash tag, so all are in the slot of the declared one.
local K_JOBS, K_RESULTS, K_ERRORS, K_PENDING
local K_SCHED, K_RETRY, K_ACTIVE, K_DEAD, K_FINISHED
local K_MARKER, K_COUNTERS, K_WORKERS, K_WINFO, K_REAPLOCK
local K_CRON, K_CRONDUE, K_TPUT, K_CANCELS, K_GHOSTS, K_UNIQUE, K_UJOBS, K_PROGRESS
local K_DUE, K_QUEUES, K_LIMITS, K_LIMDUE, K_LIMKEYS, K_LIMBLOCK, BASE
-- KK[i]: the i-th key of SUFFIXES. BOUND: the jobs key they were built for: in the function
-- library these locals live on between calls, so a call for the namespace of the last one
-- builds no name (passing the 27 names as KEYS cost each call about 2 us of server time).
local KK, BOUND = {}, nil

-- One reading of the server clock per script call (now_ms): every decision of one atomic
-- step uses the same instant.
local NOW = nil

local function bind()
  local jobs = KEYS[1]
  if jobs ~= BOUND then
    -- '<prefix>:{<namespace>}:', the start of every key (K_JOBS is BASE .. 'jobs').
    BASE = string.sub(jobs, 1, #jobs - 4)
    KK = {}
    for i = 1, #SUFFIXES do KK[i] = BASE .. SUFFIXES[i] end
    K_JOBS, K_RESULTS, K_ERRORS = KK[1], KK[2], KK[3]
    K_PENDING = { KK[4], KK[5], KK[6], KK[7] } -- index = priority + 1
    K_SCHED, K_RETRY, K_ACTIVE, K_DEAD, K_FINISHED = KK[8], KK[9], KK[10], KK[11], KK[12]
    K_MARKER, K_COUNTERS, K_WORKERS, K_WINFO, K_REAPLOCK = KK[13], KK[14], KK[15], KK[16], KK[17]
    K_CRON, K_CRONDUE, K_TPUT, K_CANCELS, K_GHOSTS = KK[18], KK[19], KK[20], KK[21], KK[22]
    K_UNIQUE, K_UJOBS, K_PROGRESS = KK[23], KK[24], KK[25]
    K_DUE, K_QUEUES = KK[26], KK[27]
    K_LIMITS, K_LIMDUE, K_LIMKEYS, K_LIMBLOCK = KK[28], KK[29], KK[30], KK[31]
    BOUND = jobs
  end
  NOW = nil
end

-- Lua 5.1's unpack is limited by the C stack (LUAI_MAXCSTACK = 8000): variadic commands are
-- sent in chunks of this many arguments.
local CHUNK = 4000

local function now_ms()
  if not NOW then
    local t = redis.call('TIME')
    NOW = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return NOW
end

-- Runs `cmd key a1 a2 ...` over `list`, in chunks. `stride` keeps pairs together.
local function bulk(cmd, key, list, stride)
  local n = #list
  if n == 0 then return end
  local step = CHUNK - (CHUNK % (stride or 1))
  for i = 1, n, step do
    local j = math.min(i + step - 1, n)
    redis.call(cmd, key, unpack(list, i, j))
  end
end

-- HMGET over many fields, chunked; returns one flat array.
local function hmget(key, ids)
  local out = {}
  for i = 1, #ids, CHUNK do
    local j = math.min(i + CHUNK - 1, #ids)
    local part = redis.call('HMGET', key, unpack(ids, i, j))
    for k = 1, #part do out[#out + 1] = part[k] end
  end
  return out
end

local STATUS = { p = true, r = true, c = true, f = true, x = true, y = true, k = true }
local U32 = 4294967295

-- The hot state's fixed-width binary form (struct, big-endian), 40 bytes: the status letter;
-- a flags byte, priority + 4 * cx + 8 if there is a generation + 16 * uq + 64 if it is in a
-- named queue + 128 * lm (so below 32, or 64 to 95, each or'd with 128; the text form has a
-- digit, 48 to 51, there, and anything else is unknown); att (u32), rc, mr (u16: at most 1,000 by validation), to
-- (u32 ms: at most 7 days), stl (u16, saturating), ca, sa, st, fa (u48 ms); then, with
-- their flags, the generation's length (u8) and its bytes, and the queue name's length
-- (u8) and its bytes. Read and written in C (struct.unpack/pack),
-- where the 14-capture pattern and string.format of the text form cost about three times
-- as much per transition (BENCHMARKS.md), in as many bytes as that form took for a new job.
local HOT = '>c1BI4I2I2I4I2I6I6I6I6'
local HOT_LEN = 40
local U16 = 65535

-- QUEUES: a job is in the default queue (q = '', its lists K_PENDING, its marker K_MARKER)
-- or in a named one, whose four lists and marker are BASE .. 'q:<name>:pending:<0..3>' and
-- BASE .. 'q:<name>:marker' (keys.rs). K_QUEUES lists every named queue a job was enqueued
-- into: name -> 'a' (active) or 'p' (paused); the default queue's field is 'default'.
-- Names are 1 to 64 of [A-Za-z0-9_.-] (the client checks; scripts check again before any
-- key is built from one).
local function valid_queue(q)
  return #q <= 64 and string.find(q, '^[%w_%.%-]+$') ~= nil
end

-- The pending list of queue q ('' default), priority p (1..4).
local function pending_of(q, p)
  if q == '' then return K_PENDING[p] end
  return BASE .. 'q:' .. q .. ':pending:' .. (p - 1)
end

-- The wake-up marker of queue q ('' default).
local function marker_of(q)
  if q == '' then return K_MARKER end
  return BASE .. 'q:' .. q .. ':marker'
end

-- The field of queue q in K_QUEUES.
local function queue_field(q)
  if q == '' then return 'default' end
  return q
end

-- The text form of earlier versions, '<s><p>:<att>:...:<fa>[:<g>]|': still read, so that a
-- queue written by them keeps working after an upgrade; written back in the binary form.
local function parse_text(rec)
  local s, p, att, rc, mr, to, cx, stl, ca, sa, st, fa, colon, g, j = string.match(rec,
    '^(%a)(%d):(%d+):(%d+):(%d+):(%d+):(%d):(%d+):(%d+):(%d+):(%d+):(%d+)(:?)(%w*)|()')
  if not s or (colon == '') ~= (g == '') then
    return nil, 'corrupt record: its state cannot be read'
  end
  if not STATUS[s] then return nil, 'corrupt record: unknown status ' .. s end
  if p > '3' then return nil, 'corrupt record: unknown priority ' .. p end
  if cx > '1' then return nil, 'corrupt record: cancel flag is not 0 or 1' end
  local h = {
    s = s, p = tonumber(p), att = tonumber(att), rc = tonumber(rc), mr = tonumber(mr),
    to = tonumber(to), cx = tonumber(cx), stl = tonumber(stl), ca = tonumber(ca),
    sa = tonumber(sa), st = tonumber(st), fa = tonumber(fa), g = g, uq = 0, q = '', lm = 0,
    meta = string.sub(rec, j),
  }
  if h.att >= U32 or h.rc > U32 or h.mr > U32 or h.to > U32 then
    return nil, 'corrupt record: counter out of range'
  end
  return h
end

-- Reads a record's hot state, checking every field, so that no script writes anything on
-- the strength of a field it cannot use (Redis does not roll a script back): a priority out
-- of range once made a push to pending[8] error after a batch had been taken out of its
-- index. Returns the state, or nil and why the record cannot be read (nil, nil: no record).
local function parse(rec)
  if not rec then return nil end
  -- The second byte: the flags (< 32) in the binary form, the priority digit in the text one.
  local f = string.byte(rec, 2)
  if f and f >= 48 and f < 64 then return parse_text(rec) end
  if #rec < HOT_LEN then return nil, 'corrupt record: its state cannot be read' end
  local s, _, att, rc, mr, to, stl, ca, sa, st, fa, j = struct.unpack(HOT, rec)
  if not STATUS[s] then return nil, 'corrupt record: unknown status ' .. s end
  local lm = 0
  if f >= 128 then
    lm = 1
    f = f - 128
  end
  local named = f >= 64
  if named then f = f - 64 end
  if f >= 32 then return nil, 'corrupt record: unknown state flags' end
  local uq = math.floor(f / 16)
  local g, q = '', ''
  if f % 16 >= 8 then
    local gl = string.byte(rec, j) or 0
    g = string.sub(rec, j + 1, j + gl)
    if gl == 0 or #g ~= gl then return nil, 'corrupt record: its state cannot be read' end
    j = j + 1 + gl
  end
  if named then
    local ql = string.byte(rec, j) or 0
    q = string.sub(rec, j + 1, j + ql)
    if ql == 0 or #q ~= ql or not valid_queue(q) then
      return nil, 'corrupt record: its queue name cannot be read'
    end
    j = j + 1 + ql
  end
  return {
    s = s, p = f % 4, att = att, rc = rc, mr = mr, to = to, cx = math.floor(f / 4) % 2,
    stl = stl, ca = ca, sa = sa, st = st, fa = fa, g = g, uq = uq, q = q, lm = lm,
    meta = string.sub(rec, j),
  }
end

-- Whether a new job's max retries and timeout fit the binary state (the client validates
-- both far below: at most 1,000 retries, 7 days).
local function fits_hot(mr, to)
  return mr and to and mr >= 0 and mr <= U16 and to >= 0 and to <= U32
end

-- The record of state `h`, always in the binary form.
local function fmt(h)
  local f, g, q = h.p + 4 * h.cx + 16 * (h.uq or 0) + 128 * (h.lm or 0), '', ''
  if h.g ~= '' then
    f = f + 8
    g = string.char(#h.g) .. h.g
  end
  if (h.q or '') ~= '' then
    f = f + 64
    q = string.char(#h.q) .. h.q
  end
  return struct.pack(HOT, h.s, f, h.att, math.min(h.rc, U16), math.min(h.mr, U16), h.to,
    math.min(h.stl, U16), h.ca, h.sa, h.st, h.fa) .. g .. q .. h.meta
end

-- The pending list entry of job `id` whose record is `h` (see the format above).
local function entry(id, h)
  if h.g == '' then return id end
  return id .. '/' .. h.g
end

-- Splits a pending list entry into the id and the generation ('' for none).
local function split_entry(e)
  local i = string.find(e, '/', 1, true)
  if not i then return e, '' end
  return string.sub(e, 1, i - 1), string.sub(e, i + 1)
end

-- Per-minute completions and failures for the last hour (the dashboard's chart), in a ring
-- of 60 slots that needs no expiry: a slot holding an older minute is reset on first use.
local function bump_minute(kind, n)
  local minute = math.floor(now_ms() / 60000)
  local slot = minute % 60
  if tonumber(redis.call('HGET', K_TPUT, 'm' .. slot)) ~= minute then
    redis.call('HSET', K_TPUT, 'm' .. slot, minute, 'c' .. slot, 0, 'f' .. slot, 0)
  end
  redis.call('HINCRBY', K_TPUT, kind .. slot, n)
end

-- The meta part of a record with the job's args appended (see the record format above).
local function with_args(meta, args)
  return meta .. '\n' .. args
end

-- The meta part without the args.
local function drop_args(meta)
  local i = string.find(meta, '\n', 1, true)
  if i then return string.sub(meta, 1, i - 1) end
  return meta
end

local function incr(field, n)
  if n ~= 0 then
    redis.call('HINCRBY', K_COUNTERS, field, n)
    if field == 'completed' then
      bump_minute('c', n)
    elseif field == 'failed' then
      bump_minute('f', n)
    end
  end
end

-- UNIQUE: a job enqueued with a uniqueness key holds its lock: K_UNIQUE[key] = '<expiry ms>
-- <id>' (who holds it, and until when at most), K_UJOBS[id] = its window's end ('d' done,
-- 's' started) .. key (what to release), and uq = 1 in its state. Every transition that
-- ends its window releases it in the same script: finish (completed, cancelled),
-- dead-lettering, complete and, for a window that ends there, the start in fetch. The
-- lock is removed only if the job still holds it (a lock past its expiry may have been
-- taken by a later job).

-- Drops the holds of the jobs `ids`, `vs` their K_UJOBS entries (nil: none), in a few bulk
-- calls however many there are (complete and fetch release a batch at once).
local function release_locks(ids, vs)
  local gone, keys, owner = {}, {}, {}
  for i = 1, #ids do
    if vs[i] then
      gone[#gone + 1] = ids[i]
      local key = string.sub(vs[i], 2)
      keys[#keys + 1] = key
      owner[#keys] = ids[i]
    end
  end
  if #gone == 0 then return end
  bulk('HDEL', K_UJOBS, gone)
  local held, free = hmget(K_UNIQUE, keys), {}
  for i = 1, #keys do
    if held[i] and string.match(held[i], '^%d+ (.*)$') == owner[i] then free[#free + 1] = keys[i] end
  end
  bulk('HDEL', K_UNIQUE, free)
end

-- Whether the record `rec` (as stored) has the uniqueness flag, read off its flags byte
-- without parsing it: the cheap test that spares a batch the K_UJOBS lookup.
local function holds_lock(rec)
  -- (A missing record is `false` here: HMGET's nil.)
  if not rec then return false end
  local f = string.byte(rec, 2)
  if f and f >= 128 then f = f - 128 end
  if f and f >= 64 then f = f - 64 end
  return f ~= nil and f < 32 and f >= 16
end

-- Ends the hold of job `id` (state `h`), if it has one.
local function unlock(id, h)
  if (h.uq or 0) == 0 then return end
  h.uq = 0
  release_locks({ id }, { redis.call('HGET', K_UJOBS, id) })
end

-- A record this version cannot read (written by hand, or by a newer version) must neither
-- vanish nor block the queue, nor stop the other jobs of its batch: it goes to the
-- dead-letter queue, with why as its error, and is counted as dead. The caller has taken it
-- out of the index it was found in.
local function dead_letter_unreadable(id, why, now)
  -- Its state cannot be read, so whether it holds a lock is looked up by its id.
  release_locks({ id }, { redis.call('HGET', K_UJOBS, id) })
  redis.call('ZADD', K_DEAD, now, id)
  redis.call('HSET', K_ERRORS, id, why)
  incr('dead', 1)
end

-- Wakes one blocked worker of queue q: there is work to fetch now.
local function mark_ready(q)
  redis.call('ZADD', marker_of(q), 0, '0')
end

-- Tells blocked workers (of every queue: fetch promotes due jobs of all of them) about a
-- due time, kept only if it is the earliest known.
local function mark_due(due)
  redis.call('ZADD', K_DUE, 'LT', due, '1')
end

-- completed/cancelled: keep the record, args included, until now + ttl.
local function finish(id, h, status, now, ttl)
  unlock(id, h)
  h.s = status
  h.fa = now
  redis.call('HSET', K_JOBS, id, fmt(h))
  redis.call('ZADD', K_FINISHED, now + ttl, id)
end

local function delete_records(ids)
  bulk('HDEL', K_JOBS, ids)
  bulk('HDEL', K_RESULTS, ids)
  bulk('HDEL', K_ERRORS, ids)
  bulk('HDEL', K_PROGRESS, ids)
  bulk('HDEL', K_LIMITS, ids)
end

-- Removes up to `limit` finished records whose retention ended. Returns how many.
local function purge_finished(now, limit)
  local old = redis.call('ZRANGEBYSCORE', K_FINISHED, '-inf', now, 'LIMIT', 0, limit)
  if #old > 0 then
    bulk('ZREM', K_FINISHED, old)
    delete_records(old)
    incr('purged', #old)
  end
  return #old
end

-- Drops DLQ entries older than dead_ttl, then the oldest beyond dead_max; at most `limit`.
local function trim_dead(now, dead_max, dead_ttl, limit)
  local old = redis.call('ZRANGEBYSCORE', K_DEAD, '-inf', now - dead_ttl, 'LIMIT', 0, limit)
  local dropped = #old
  if dropped > 0 then
    bulk('ZREM', K_DEAD, old)
    delete_records(old)
  end
  local excess = redis.call('ZCARD', K_DEAD) - dead_max
  if excess > 0 and dropped < limit then
    local over = redis.call('ZRANGE', K_DEAD, 0, math.min(excess, limit - dropped) - 1)
    bulk('ZREM', K_DEAD, over)
    delete_records(over)
    dropped = dropped + #over
  end
  incr('dead_dropped', dropped)
end

-- A job's own backoff, over the policy's base and cap: the client writes it as the first
-- key of the meta JSON, {"r":[<base ms>|null,<cap ms>|null],..., and only for a job that
-- has one (record.rs, MetaOut::r); each part given replaces the policy's.
local function backoff(h, o)
  local b, c = string.match(h.meta, '^{"r":%[(%w+),(%w+)%]')
  return tonumber(b) or o.base, tonumber(c) or o.cap
end

-- The end of a failed attempt of a job that is no longer in `active`. `o` holds the policy:
-- base, cap, jitter (ms), dead_max, dead_ttl, ttl. `after` (ms, or nil): the delay the
-- handler asked for, instead of the backoff and its jitter. Returns {'RETRY', due} |
-- {'DEAD'} | {'CANCELLED'}.
local function fail_job(id, h, err, retryable, now, o, after)
  redis.call('HSET', K_ERRORS, id, err)
  if h.cx == 1 then
    finish(id, h, 'x', now, o.ttl)
    incr('cancelled', 1)
    return { 'CANCELLED' }
  end
  incr('failed', 1)
  if retryable and h.rc < h.mr then
    h.rc = h.rc + 1
    local delay = after
    if not delay then
      local base, cap = backoff(h, o)
      delay = math.min(base * math.pow(2, h.rc - 1), cap) + o.jitter
    end
    local due = now + math.floor(delay)
    h.s = 'y'
    h.sa = due
    redis.call('HSET', K_JOBS, id, fmt(h))
    redis.call('ZADD', K_RETRY, due, id)
    mark_due(due)
    incr('retried', 1)
    return { 'RETRY', due }
  end
  h.s = 'f'
  h.fa = now
  unlock(id, h)
  redis.call('HSET', K_JOBS, id, fmt(h))
  redis.call('ZADD', K_DEAD, now, id)
  incr('dead', 1)
  trim_dead(now, o.dead_max, o.dead_ttl, o.trim)
  return { 'DEAD' }
end

-- Parses the policy arguments ARGV[i..i+6]: base cap jitter dead_max dead_ttl ttl trim.
local function policy(i)
  return {
    base = tonumber(ARGV[i]), cap = tonumber(ARGV[i + 1]), jitter = tonumber(ARGV[i + 2]),
    dead_max = tonumber(ARGV[i + 3]), dead_ttl = tonumber(ARGV[i + 4]),
    ttl = tonumber(ARGV[i + 5]), trim = tonumber(ARGV[i + 6]),
  }
end

-- A cancel leaves a ready job's list entry behind (a "ghost": O(1) instead of LREM's O(n));
-- fetch skips it. Ghosts are counted per priority so that stats stay exact, and per id in
-- K_GHOSTS while any is left. Once the cancelled record is purged its id can be enqueued
-- again: the new record then gets a generation (a number no enqueue had before), so that the
-- ghost, which does not carry it, is not taken for the new job's entry. An id without ghosts
-- (nearly every one) gets none: its entries stay bare ids and its record has no `g`.
local GHOST = { 'ghost0', 'ghost1', 'ghost2', 'ghost3' }

-- The counter of ghosts in queue q's list of priority p (1..4).
local function ghost_field(q, p)
  if q == '' then return GHOST[p] end
  return 'ghost:' .. q .. ':' .. (p - 1)
end

-- Queue q's ready jobs per priority (1..4): its list lengths less their ghosts (read only).
local function ready_counts(q)
  local fields = {}
  for p = 1, 4 do fields[p] = ghost_field(q, p) end
  local ghosts = redis.call('HMGET', K_COUNTERS, unpack(fields))
  local out = {}
  for p = 1, 4 do
    out[p] = math.max(redis.call('LLEN', pending_of(q, p)) - (tonumber(ghosts[p]) or 0), 0)
  end
  return out
end

-- Called when fetch skips the ghosts `ids` of queue q's priority list p.
local function ghosts_gone(q, p, ids)
  incr(ghost_field(q, p), -#ids)
  for i = 1, #ids do
    if redis.call('HINCRBY', K_GHOSTS, ids[i], -1) <= 0 then
      redis.call('HDEL', K_GHOSTS, ids[i])
    end
  end
end

-- A generation for the records that enqueue (or sched_fire) creates in this call under ids
-- that still have ghosts: one per call is enough, since one call never creates two records
-- under one id.
local function new_generation()
  return tostring(redis.call('HINCRBY', K_COUNTERS, 'generation', 1))
end

-- Earliest due time among delayed and retrying jobs and limiters whose parked jobs may go
-- (limits_lib.lua), or nil.
local function next_due()
  local d = nil
  for _, z in ipairs({ K_SCHED, K_RETRY, K_LIMDUE }) do
    local a = redis.call('ZRANGE', z, 0, 0, 'WITHSCORES')
    if a[2] and (not d or tonumber(a[2]) < d) then d = tonumber(a[2]) end
  end
  return d
end
