-- clear_dead: deletes up to `limit` dead-letter jobs (the client calls again until 0).
-- ARGV[1]: limit
-- Returns: how many were deleted.
local ids = redis.call('ZRANGE', K_DEAD, 0, tonumber(ARGV[1]) - 1)
if #ids > 0 then
  bulk('ZREM', K_DEAD, ids)
  delete_records(ids)
end
return #ids
