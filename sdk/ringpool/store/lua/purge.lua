-- Remove dead-lettered tasks of one partition and their records; ids not in the DLQ are
-- left alone.
-- KEYS[1] dlq zset, KEYS[1 + i] the record of the i-th id. ARGV: ids.
-- Returns how many were removed.
local removed = 0
for i = 1, #ARGV do
  if redis.call('ZREM', KEYS[1], ARGV[i]) == 1 then
    redis.call('DEL', KEYS[1 + i])
    removed = removed + 1
  end
end
return removed
