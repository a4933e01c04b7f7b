-- Claim due tasks of one kind of waiting zset (the retry zsets, or the scheduled zsets of
-- delayed tasks and schedule ticks) for one lease: push their due time to the lease's end
-- (so a crash of the claimer only delays them), count the claim in the record, and
-- return what is needed to dispatch them. The accept script removes an entry when its
-- dispatch is accepted (and clears its claim count).
-- KEYS: KEYS[g] the waiting zset of each partition g the call covers (one on a Redis
-- Cluster), then KEYS[G + i] the record of the i-th candidate (G partitions).
-- ARGV: lease (s), G, and a msgpack list of {candidate id, g} (read from the zsets just
--       before; those no longer due by Redis' clock, or no longer there, are left alone).
-- Returns {id, envelope, attempt, claims} per task, flattened, then how late (s) the
-- oldest of them was by Redis' clock.
local at = now()
local lease_until = string.format('%.6f', tonumber(at) + tonumber(ARGV[1]))
local partitions = tonumber(ARGV[2])
local out = {}
local oldest = nil
for i, item in ipairs(cmsgpack.unpack(ARGV[3])) do
  local id, waiting = item[1], KEYS[item[2]]
  local due = redis.call('ZSCORE', waiting, id)
  if due and tonumber(due) <= tonumber(at) then
    local rec = KEYS[partitions + i]
    local fields = redis.call('HMGET', rec, 'envelope', 'redeliver_attempt', 'attempt')
    if not fields[1] then
      redis.call('ZREM', waiting, id)
    else
      redis.call('ZADD', waiting, 'XX', lease_until, id)
      table.insert(out, id); table.insert(out, fields[1])
      table.insert(out, fields[2] or fields[3] or '1')
      table.insert(out, redis.call('HINCRBY', rec, 'claims', 1))
      if not oldest or tonumber(due) < oldest then oldest = tonumber(due) end
    end
  end
end
table.insert(out, string.format('%.6f', oldest and (tonumber(at) - oldest) or 0))
return out
