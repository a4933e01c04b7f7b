-- Remove dead-lettered tasks and their records; ids not in the DLQ are left alone.
-- KEYS: KEYS[g] the dlq zset of each partition g the call covers (one on a Redis
-- Cluster), then KEYS[G + i] the record of the i-th id (G partitions).
-- ARGV: G, then {id, g} of each task, flattened.
-- Returns how many were removed.
local partitions = tonumber(ARGV[1])
local removed = 0
for i = 1, (#ARGV - 1) / 2 do
  local id, g = ARGV[2 * i], tonumber(ARGV[2 * i + 1])
  if redis.call('ZREM', KEYS[g], id) == 1 then
    redis.call('DEL', KEYS[partitions + i])
    removed = removed + 1
  end
end
return removed
