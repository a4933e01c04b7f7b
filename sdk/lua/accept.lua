-- Durable accept of a batch, in one round trip.
-- KEYS[1] this node's in-flight hash (task id -> owner epoch), KEYS[2] retry zset,
-- KEYS[3] dlq zset, KEYS[4] set of nodes with in-flight hashes, KEYS[4+i] fingerprint of task i.
-- ARGV: node, epoch, now, fingerprint ttl (s), record key prefix,
--       then per task: id, source, envelope, name, key, attempt.
-- A client task is new when its fingerprint is; a retry or replay is accepted only
-- while it is still waiting in the retry set or the DLQ, and leaves it here.
local node, epoch, now, ttl, prefix = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local out = {}
local any = false
for i = 1, #KEYS - 4 do
  local fp = KEYS[4 + i]
  local a = 6 + (i - 1) * 6
  local id, source = ARGV[a], ARGV[a + 1]
  local rec = prefix .. id
  local accepted = false
  if source == 'client' then
    if redis.call('SET', fp, id, 'NX', 'EX', ttl) then
      accepted = true
    else
      local original = redis.call('GET', fp) or id
      local state = redis.call('HGET', prefix .. original, 'state') or ''
      table.insert(out, 'D'); table.insert(out, original); table.insert(out, state)
    end
  else
    local waiting = (source == 'retry') and KEYS[2] or KEYS[3]
    if redis.call('ZREM', waiting, id) == 1 then
      accepted = true
      if source == 'replay' then
        local holder = redis.call('GET', fp)
        if not holder or holder == id then redis.call('SET', fp, id, 'EX', ttl) end
        redis.call('PERSIST', rec)
        redis.call('HINCRBY', rec, 'replays', 1)
        redis.call('HDEL', rec, 'finished_at', 'result')
      end
    else
      table.insert(out, 'N'); table.insert(out, id)
      table.insert(out, redis.call('HGET', rec, 'state') or '')
    end
  end
  if accepted then
    redis.call('HSET', rec, 'envelope', ARGV[a + 2], 'name', ARGV[a + 3], 'key', ARGV[a + 4],
      'attempt', ARGV[a + 5], 'state', 'QUEUED', 'node', node, 'epoch', epoch,
      'accepted_at', now)
    redis.call('HSETNX', rec, 'created_at', now)
    redis.call('HSET', KEYS[1], id, epoch)
    any = true
    table.insert(out, 'A'); table.insert(out, id); table.insert(out, 'QUEUED')
  end
end
if any then redis.call('SADD', KEYS[4], node) end
return out
