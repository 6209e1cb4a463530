-- fetch: promotes due delayed/retrying jobs (of every queue, each into its own), then
-- leases up to n ready jobs of the queues served, in their order, skipping paused ones.
-- ARGV[1]: n, ARGV[2]: worker id (unused by the record; kept for the call's log),
-- ARGV[3]: lease ms, ARGV[4]: grace ms, ARGV[5]: promote limit, ARGV[6]: skip limit (the
-- most dead entries, ghosts or unreadable records, one call takes out of the lists),
-- ARGV[7]: m, the number of queues served, ARGV[8..7+m]: their names ('' the default),
-- KEYS[2] (optional): this call's request key, and then ARGV[8+m]: how long the leases
-- handed out are kept for a retry of this call, ms (see scripts.rs)
-- Returns: { now, next_due_in ms or -1, then per job: id, attempt, record (with args),
--          last error or false }
local n = tonumber(ARGV[1])
local lease, grace, limit = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local skip_limit = tonumber(ARGV[6])
local m = tonumber(ARGV[7]) or 0
local served = {}
for i = 1, m do
  local q = ARGV[7 + i]
  if not q or (q ~= '' and not valid_queue(q)) then
    return redis.error_reply('ERR fetch: invalid queue name')
  end
  served[i] = q
end
local K_REQ, replay_ttl = KEYS[2], tonumber(ARGV[8 + m])
local now = now_ms()

-- A retry of a call whose reply was lost (a reset, a timeout) gets the leases that call
-- handed out, those its worker still holds, instead of leasing more: otherwise they would
-- sit leased to nobody until reaped, counted as stalls. Only "<id> <attempt>" pairs are
-- kept (not the records), for a few seconds.
local function replay(stored)
  local ids, atts = {}, {}
  for id, att in string.gmatch(stored, '(%S+) (%d+)') do
    ids[#ids + 1] = id
    atts[#atts + 1] = tonumber(att)
  end
  local out = { now, -1 }
  if #ids > 0 then
    local recs, errs = hmget(K_JOBS, ids), hmget(K_ERRORS, ids)
    for i = 1, #ids do
      local h = parse(recs[i])
      if h and h.s == 'r' and h.att == atts[i] then
        out[#out + 1] = ids[i]
        out[#out + 1] = h.att
        out[#out + 1] = recs[i]
        out[#out + 1] = (h.att > 1 and errs[i]) or false
      end
    end
  end
  local d = next_due()
  if d then out[2] = math.max(d - now, 0) end
  return out
end
if K_REQ then
  local prev = redis.call('GET', K_REQ)
  if prev then return replay(prev) end
end

-- 1. Promote, at most `limit` in all: delayed jobs first, then retries, each in due order,
-- to the tail of their queue's list of their priority; each queue that got any is woken.
local woken = {}
for _, zkey in ipairs({ K_SCHED, K_RETRY }) do
  local due = {}
  if limit > 0 then
    due = redis.call('ZRANGEBYSCORE', zkey, '-inf', now, 'LIMIT', 0, limit)
    limit = limit - #due
  end
  if #due > 0 then
    bulk('ZREM', zkey, due)
    local recs = hmget(K_JOBS, due)
    -- ready[q][p]: the entries going to queue q's list of priority p.
    local upd, ready = {}, {}
    for i = 1, #due do
      local h, why = parse(recs[i])
      -- Only a waiting job is promoted; anything else was an index entry left behind.
      if h and (h.s == 'p' or h.s == 'y') then
        h.s = 'p'
        upd[#upd + 1] = due[i]
        upd[#upd + 1] = fmt(h)
        local rq = ready[h.q]
        if not rq then
          rq = { {}, {}, {}, {} }
          ready[h.q] = rq
        end
        local r = rq[h.p + 1]
        r[#r + 1] = entry(due[i], h)
      elseif why then
        dead_letter_unreadable(due[i], why, now)
      end
    end
    bulk('HSET', K_JOBS, upd, 2)
    for q, rq in pairs(ready) do
      for p = 1, 4 do
        if #rq[p] > 0 then
          bulk('RPUSH', pending_of(q, p), rq[p])
        end
      end
      woken[q] = true
    end
  end
end

-- 1b. Limiters whose time has come give their parked jobs back to their lists' heads.
unpark_due(now, limit)

-- The queues served that are not paused, in order (one HMGET for all of them).
local open = {}
do
  local fields = {}
  for i = 1, m do fields[i] = queue_field(served[i]) end
  local states = {}
  if m > 0 then states = redis.call('HMGET', K_QUEUES, unpack(fields)) end
  for i = 1, m do
    if states[i] ~= 'p' then open[#open + 1] = served[i] end
  end
end

-- 2. Pop queue by queue, each in strict priority order, until n live jobs are leased, or
-- skip_limit dead entries have been skipped (a mass cancel must not make one call drain
-- every ghost: the rest is left to the next call, and step 3 tells the workers there is
-- more). Never more is popped
-- than both budgets allow, so every entry popped is dealt with.
local out = { now, -1 }
local taken, skipped = 0, 0
local upd, act, again = {}, {}, {}
for qi = 1, #open do
  local q = open[qi]
  for p = 1, 4 do
    while taken < n and skipped < skip_limit do
      local es = redis.call('LPOP', pending_of(q, p), math.min(n - taken, skip_limit - skipped))
      if not es then break end
      local ids, gens = {}, {}
      for i = 1, #es do ids[i], gens[i] = split_entry(es[i]) end
      local recs = hmget(K_JOBS, ids)
      local ghosts = {}
      -- The uniqueness holds of this chunk, looked up in one call, only if any record has one:
      -- a window that ends at the start (until = "started") is released below.
      local locked, holds = {}, {}
      for i = 1, #ids do
        if holds_lock(recs[i]) then locked[#locked + 1] = ids[i] end
      end
      if #locked > 0 then
        local vs = hmget(K_UJOBS, locked)
        for i = 1, #locked do holds[locked[i]] = vs[i] end
      end
      local started, started_v = {}, {}
      local hs, whys = {}, {}
      for i = 1, #ids do hs[i], whys[i] = parse(recs[i]) end
      -- The limiters of the jobs held to some (one lookup for the chunk; see limits_lib.lua).
      local specs = limiters_of(ids, hs)
      for i = 1, #ids do
        local h, why = hs[i], whys[i]
        local deadline = 0
        local refused, due = nil, nil
        if h and h.s == 'p' and h.g == gens[i] then
          deadline = math.min(now + lease, now + h.to + grace)
          if specs[ids[i]] then refused, due = admit(ids[i], h.att + 1, specs[ids[i]], now, grace, deadline) end
        end
        if refused then
          -- Over a limit: parked until the limiter has a slot (no head-of-line blocking).
          park(ids[i], h, refused, due)
          upd[#upd + 1] = ids[i]
          upd[#upd + 1] = fmt(h)
          skipped = skipped + 1
        -- The entry of the record's own enqueue (generations equal), and the job is ready.
        elseif h and h.s == 'p' and h.g == gens[i] then
          h.s = 'r'
          h.att = h.att + 1
          h.st = now
          -- A uniqueness window that ends when the job starts (until = "started").
          local v = h.uq == 1 and holds[ids[i]]
          if v and string.sub(v, 1, 1) == 's' then
            h.uq = 0
            started[#started + 1] = ids[i]
            started_v[#started_v + 1] = v
          end
          local rec = fmt(h)
          upd[#upd + 1] = ids[i]
          upd[#upd + 1] = rec
          act[#act + 1] = deadline
          act[#act + 1] = ids[i]
          out[#out + 1] = ids[i]
          out[#out + 1] = h.att
          out[#out + 1] = rec
          out[#out + 1] = false
          -- Only a job that ran before can have an error to show its handler.
          if h.att > 1 then again[#again + 1] = #out end
          taken = taken + 1
        elseif why then
          dead_letter_unreadable(ids[i], why, now)
          skipped = skipped + 1
        else
          -- Cancelled while queued (purged since, or its id enqueued again): a ghost.
          ghosts[#ghosts + 1] = ids[i]
          skipped = skipped + 1
        end
      end
      ghosts_gone(q, p, ghosts)
      release_locks(started, started_v)
    end
  end
end
if #again > 0 then
  local ids = {}
  for i = 1, #again do ids[i] = out[again[i] - 3] end
  local errs = hmget(K_ERRORS, ids)
  for i = 1, #again do out[again[i]] = errs[i] or false end
end
bulk('HSET', K_JOBS, upd, 2)
bulk('ZADD', K_ACTIVE, act, 2)

-- 3. Work left in a queue served: wake its next worker (a burst wakes processes one after
-- another); and every queue that got promoted jobs.
for qi = 1, #open do
  local q = open[qi]
  if not woken[q] then
    for p = 1, 4 do
      if redis.call('LLEN', pending_of(q, p)) > 0 then
        woken[q] = true
        break
      end
    end
  end
end
for q in pairs(woken) do mark_ready(q) end
local d = next_due()
if d then out[2] = math.max(d - now, 0) end
-- 4. For a retry of this call: the leases handed out (a call that leased nothing leaves
-- nothing, and its retry is a new fetch).
if K_REQ and taken > 0 and replay_ttl and replay_ttl > 0 then
  local kept = {}
  for i = 3, #out, 4 do kept[#kept + 1] = out[i] .. ' ' .. out[i + 1] end
  redis.call('SET', K_REQ, table.concat(kept, ' '), 'PX', replay_ttl)
end
return out
