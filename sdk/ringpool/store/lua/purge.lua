-- Remove dead-lettered tasks and their records; ids not in the DLQ are left alone.
-- KEYS[1] dlq zset. ARGV: record prefix, ids... Returns how many were removed.
local removed = 0
for i = 2, #ARGV do
  if redis.call('ZREM', KEYS[1], ARGV[i]) == 1 then
    redis.call('DEL', ARGV[1] .. ARGV[i])
    removed = removed + 1
  end
end
return removed
