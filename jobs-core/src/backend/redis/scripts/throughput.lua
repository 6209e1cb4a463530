-- throughput: the per-minute ring, with the server's clock (read only).
-- Returns: { now ms, field, value, field, value, ... }
local out = { now_ms() }
local all = redis.call('HGETALL', K_TPUT)
for i = 1, #all do out[#out + 1] = all[i] end
return out
