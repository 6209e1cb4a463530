-- limits: the limiters in use (Backend::limits; limits_lib.lua). Forgets, as it goes, the
-- ones no longer in use (nothing in the window or holding a slot, nothing parked, no hold).
-- ARGV[1]: max listed
-- Returns: { per limiter: name, kind, max, per ms (0 for concurrency), in use, parked,
--          next slot ms (0: none), held until ms (0: none) }
local max_n = tonumber(ARGV[1])
local now = now_ms()
local out, idle = {}, {}
local cursor, rounds = '0', 0
repeat
  local r = redis.call('HSCAN', K_LIMKEYS, cursor, 'COUNT', 100)
  cursor = r[1]
  rounds = rounds + 1
  local kv = r[2]
  for i = 1, #kv, 2 do
    if #out >= 8 * max_n then break end
    local L, b = kv[i], kv[i + 1]
    local kind, max, per = string.match(b, '^(%a) (%d+) ?(%d*)$')
    max, per = tonumber(max) or 0, tonumber(per) or 0
    local z = BASE .. 'lim:' .. L
    local used, next_slot = 0, 0
    if kind == 'r' then
      used = redis.call('ZCOUNT', z, '(' .. (now - per), '+inf')
      if used >= max and max > 0 then
        local first = redis.call('ZRANGE', z, used - max, used - max, 'WITHSCORES')
        if first[2] then next_slot = tonumber(first[2]) + per end
      end
    else
      used = redis.call('ZCARD', z)
    end
    local parked = redis.call('LLEN', BASE .. 'limp:' .. L)
    local held = tonumber(redis.call('HGET', K_LIMBLOCK, L)) or 0
    if held <= now then held = 0 end
    if used == 0 and parked == 0 and held == 0 then
      idle[#idle + 1] = L
    else
      local k = 'concurrency'
      if kind == 'r' then k = 'rate' end
      for _, v in ipairs({ L, k, max, per, used, parked, next_slot, held }) do out[#out + 1] = v end
    end
  end
until cursor == '0' or #out >= 8 * max_n or rounds >= 100
for i = 1, #idle do
  local L = idle[i]
  redis.call('HDEL', K_LIMKEYS, L)
  redis.call('HDEL', K_LIMBLOCK, L)
  redis.call('DEL', BASE .. 'lim:' .. L)
end
return out
