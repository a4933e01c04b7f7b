-- Claim due tasks of one zset (the retry zset, or the scheduled zset of delayed tasks and
-- schedule ticks) for one lease: push their due time to lease_until (so a crash of the
-- claimer only delays them) and return what is needed to re-dispatch them. The accept
-- script removes an entry when its re-dispatch is accepted.
-- KEYS[1] the zset. ARGV: now, lease_until, limit, record prefix.
-- Returns id, envelope, attempt triples.
local out = {}
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(due) do
  local fields = redis.call('HMGET', ARGV[4] .. id, 'envelope', 'redeliver_attempt', 'attempt')
  if not fields[1] then
    redis.call('ZREM', KEYS[1], id)
  else
    redis.call('ZADD', KEYS[1], 'XX', ARGV[2], id)
    table.insert(out, id); table.insert(out, fields[1])
    table.insert(out, fields[2] or fields[3] or '1')
  end
end
return out
