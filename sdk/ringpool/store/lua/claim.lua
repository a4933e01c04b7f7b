-- Claim due retries for one lease: push their due time to lease_until (so a crash of the
-- claimer only delays them) and return what is needed to re-dispatch them. The accept
-- script removes an entry when its re-dispatch is accepted.
-- KEYS: KEYS[g] the retry zset of each partition g the call covers (one on a Redis
-- Cluster), then KEYS[G + i] the record of the i-th candidate (G partitions).
-- ARGV: now, lease_until, G, and a msgpack list of {candidate id, g} (read from the
--       zsets just before; those no longer due or no longer there are left alone).
-- Returns id, envelope, attempt triples.
local now, lease_until, partitions = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
local out = {}
for i, item in ipairs(cmsgpack.unpack(ARGV[4])) do
  local id, retries = item[1], KEYS[item[2]]
  local due = redis.call('ZSCORE', retries, id)
  if due and tonumber(due) <= now then
    local fields = redis.call('HMGET', KEYS[partitions + i], 'envelope', 'redeliver_attempt',
      'attempt')
    if not fields[1] then
      redis.call('ZREM', retries, id)
    else
      redis.call('ZADD', retries, 'XX', lease_until, id)
      table.insert(out, id); table.insert(out, fields[1])
      table.insert(out, fields[2] or fields[3] or '1')
    end
  end
end
return out
