-- workers: the workers seen within a ttl, on the server's clock (read only).
-- ARGV[1]: ttl ms
-- Returns: { now, then per worker: id, last seen ms, info JSON }
local now = now_ms()
local w = redis.call('ZRANGEBYSCORE', K_WORKERS, now - tonumber(ARGV[1]), '+inf', 'WITHSCORES')
local out = { now }
if #w == 0 then return out end
local ids = {}
for i = 1, #w, 2 do ids[#ids + 1] = w[i] end
local info = hmget(K_WINFO, ids)
for i = 1, #ids do
  out[#out + 1] = ids[i]
  out[#out + 1] = w[2 * i]
  out[#out + 1] = info[i] or 'null'
end
return out
