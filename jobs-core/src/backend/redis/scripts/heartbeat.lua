-- heartbeat: extends the leases a worker holds and records the worker as alive.
-- ARGV[1]: worker id, ARGV[2]: info JSON, ARGV[3]: lease ms, ARGV[4]: grace ms, ARGV[5]: k,
-- then k pairs: id, attempt
-- Returns: { lost ids, ids whose cancel was requested }
local wid, info = ARGV[1], ARGV[2]
local lease, grace, k = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local now = now_ms()
local lost, cancel = {}, {}
if k > 0 then
  local ids = {}
  for i = 1, k do ids[i] = ARGV[4 + 2 * i] end
  local recs = hmget(K_JOBS, ids)
  local act, hs = {}, {}
  for i = 1, k do hs[i] = parse(recs[i]) end
  -- The concurrency slots of the jobs held to limits follow their leases (limits_lib.lua).
  local specs = limiters_of(ids, hs)
  for i = 1, k do
    local h = hs[i]
    if h and h.s == 'r' and h.att == tonumber(ARGV[5 + 2 * i]) then
      -- Never past started + timeout + grace: a hung handler still loses its lease.
      local deadline = math.min(now + lease, h.st + h.to + grace)
      act[#act + 1] = deadline
      act[#act + 1] = ids[i]
      if specs[ids[i]] then extend_slot(ids[i], specs[ids[i]], deadline) end
      if h.cx == 1 then cancel[#cancel + 1] = ids[i] end
    else
      lost[#lost + 1] = ids[i]
    end
  end
  if #act > 0 then
    for i = 1, #act, 4000 do
      redis.call('ZADD', K_ACTIVE, 'XX', unpack(act, i, math.min(i + 3999, #act)))
    end
  end
end
redis.call('ZADD', K_WORKERS, now, wid)
redis.call('HSET', K_WINFO, wid, info)
return { lost, cancel }
