-- list_jobs: one page of one index, newest first (read only; see Backend::list_jobs).
-- ARGV[1]: the index's position in the key list (KK, lib.lua: 8 scheduled, 9 retry, 10 active, 11 dead,
--          12 finished), ARGV[2]: the status letter a record must have ('' for any),
-- ARGV[3], ARGV[4]: the cursor's score and id ('' for the top),
-- ARGV[5]: limit (jobs returned), ARGV[6]: most entries examined,
-- ARGV[7], ARGV[8]: '"n":<name JSON>' and '"u":<user id JSON>' to find in the meta ('' for
--          no filter; the client encodes them as it encodes the meta, whose only strings
--          are these two values, so a plain find cannot match inside another field)
-- Returns: { cursor score, cursor id ('' '' at the end), then id, record, error ('' for
--          none) per job }
local key = KK[tonumber(ARGV[1])]
if not key then return redis.error_reply('ERR list_jobs: no such index') end
local want, cs, cm = ARGV[2], ARGV[3], ARGV[4]
local limit, scan = tonumber(ARGV[5]), tonumber(ARGV[6])
local fname, fuser = ARGV[7], ARGV[8]

-- The rank (in descending order) of the first entry after (cs, cm): past every entry of a
-- higher score, then past the entries of score cs whose id is not below cm (equal scores
-- are ordered by id, descending here), by bisection over that run: O(log^2 n), whether or
-- not the cursor's entry is still there.
local start = 0
if cs ~= '' then
  local lo = redis.call('ZCOUNT', key, '(' .. cs, '+inf')
  local hi = lo + redis.call('ZCOUNT', key, cs, cs)
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    local e = redis.call('ZREVRANGE', key, mid, mid)[1]
    -- Lua compares strings with strcoll: for job ids (lowercase hex UUIDs, dashes at fixed
    -- places) that is their byte order, the ZSET's order of equal scores.
    if e < cm then hi = mid else lo = mid + 1 end
  end
  start = lo
end

local out = { '', '' }
local found, examined, pos = 0, 0, start
local last_s, last_m = nil, nil
while found < limit and examined < scan do
  local n = math.min(100, scan - examined)
  local batch = redis.call('ZREVRANGE', key, pos, pos + n - 1, 'WITHSCORES')
  if #batch == 0 then break end
  for i = 1, #batch, 2 do
    if found >= limit then break end
    local id = batch[i]
    examined = examined + 1
    pos = pos + 1
    last_m, last_s = id, batch[i + 1]
    local rec = redis.call('HGET', K_JOBS, id)
    local h = parse(rec)
    if h and (want == '' or h.s == want) then
      local meta = drop_args(h.meta)
      if (fname == '' or string.find(meta, fname, 1, true))
        and (fuser == '' or string.find(meta, fuser, 1, true)) then
        found = found + 1
        out[#out + 1] = id
        out[#out + 1] = rec
        out[#out + 1] = redis.call('HGET', K_ERRORS, id) or ''
      end
    end
  end
end
if last_m and redis.call('ZREVRANGE', key, pos, pos)[1] then
  out[1], out[2] = last_s, last_m
end
return out
