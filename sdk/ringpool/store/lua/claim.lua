-- Claim due tasks of one zset (the retry zset, or the scheduled zset of delayed tasks and
-- schedule ticks) for one lease: push their due time to the lease's end (so a crash of
-- the claimer only delays them), count the claim in the record, and return what is
-- needed to re-dispatch them. The accept script removes an entry when its re-dispatch is
-- accepted (and clears its claim count).
-- KEYS[1] the zset. ARGV: lease (s), limit, record prefix.
-- Returns {id, envelope, attempt, claims} per task, flattened, then how late (s) the
-- oldest of them was by Redis' clock.
local at = now()
local lease_until = string.format('%.6f', tonumber(at) + tonumber(ARGV[1]))
local out = {}
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', at, 'WITHSCORES', 'LIMIT', 0,
  tonumber(ARGV[2]))
for i = 1, #due, 2 do
  local id = due[i]
  local rec = ARGV[3] .. id
  local fields = redis.call('HMGET', rec, 'envelope', 'redeliver_attempt', 'attempt')
  if not fields[1] then
    redis.call('ZREM', KEYS[1], id)
  else
    redis.call('ZADD', KEYS[1], 'XX', lease_until, id)
    table.insert(out, id); table.insert(out, fields[1])
    table.insert(out, fields[2] or fields[3] or '1')
    table.insert(out, redis.call('HINCRBY', rec, 'claims', 1))
  end
end
local late = 0
if #due > 0 then late = tonumber(at) - tonumber(due[2]) end
table.insert(out, string.format('%.6f', late))
return out
