-- Claim due retries of one partition for one lease: push their due time to lease_until
-- (so a crash of the claimer only delays them) and return what is needed to re-dispatch
-- them. The accept script removes an entry when its re-dispatch is accepted.
-- KEYS[1] retry zset, KEYS[1 + i] the record of the i-th candidate.
-- ARGV: now, lease_until, and a msgpack list of candidate ids (read from the zset just
--       before; those no longer due or no longer there are left alone).
-- Returns id, envelope, attempt triples.
local now, lease_until = tonumber(ARGV[1]), ARGV[2]
local out = {}
for i, id in ipairs(cmsgpack.unpack(ARGV[3])) do
  local due = redis.call('ZSCORE', KEYS[1], id)
  if due and tonumber(due) <= now then
    local fields = redis.call('HMGET', KEYS[1 + i], 'envelope', 'redeliver_attempt', 'attempt')
    if not fields[1] then
      redis.call('ZREM', KEYS[1], id)
    else
      redis.call('ZADD', KEYS[1], 'XX', lease_until, id)
      table.insert(out, id); table.insert(out, fields[1])
      table.insert(out, fields[2] or fields[3] or '1')
    end
  end
end
return out
