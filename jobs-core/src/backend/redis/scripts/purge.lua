-- purge: removes finished records past their retention.
-- ARGV[1]: limit
-- Returns: how many were removed.
return purge_finished(now_ms(), tonumber(ARGV[1]))
