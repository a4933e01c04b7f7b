-- Durable accept of a batch, in one round trip.
-- KEYS[1] this node's in-flight hash (task id -> owner epoch), KEYS[2] retry zset,
-- KEYS[3] dlq zset, KEYS[4] set of nodes with in-flight hashes.
-- ARGV: node, epoch, fingerprint ttl (s), record key prefix, and a msgpack array of
--       {id, source, envelope, attempt, fingerprint key} per task. (The fingerprint and
--       record keys share the cluster's hash tag, so they live in the same slot.)
-- Returns a msgpack array of {code, task id, state}: A accepted, D duplicate of that
-- task id, X refused (a record with that id exists), N not redeliverable.
-- A client task is new when its fingerprint is free and no record has its id: an id
-- that is taken is refused, never written over. A retry or replay is accepted only
-- while it is still waiting in the retry set or the DLQ, and leaves it here.
local node, epoch, ttl, prefix = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local tasks = cmsgpack.unpack(ARGV[5])
local at = now()
local out = {}
local any = false
for i, t in ipairs(tasks) do
  local id, source, envelope, attempt, fp = t[1], t[2], t[3], t[4], t[5]
  local rec = prefix .. id
  local accepted = false
  if source == 'client' then
    local holder = redis.call('GET', fp)
    if holder then
      out[i] = {'D', holder, redis.call('HGET', prefix .. holder, 'state') or ''}
    elseif redis.call('EXISTS', rec) == 1 then
      out[i] = {'X', id, redis.call('HGET', rec, 'state') or ''}
    else
      redis.call('SET', fp, id, 'EX', ttl)
      accepted = true
    end
  else
    local waiting = (source == 'retry') and KEYS[2] or KEYS[3]
    if redis.call('ZREM', waiting, id) == 1 then
      accepted = true
      redis.call('HDEL', rec, 'claims')
      if source == 'replay' then
        local holder = redis.call('GET', fp)
        if not holder or holder == id then redis.call('SET', fp, id, 'EX', ttl) end
        redis.call('PERSIST', rec)
        redis.call('HINCRBY', rec, 'replays', 1)
        redis.call('HDEL', rec, 'finished_at', 'result')
      end
    else
      out[i] = {'N', id, redis.call('HGET', rec, 'state') or ''}
    end
  end
  if accepted then
    redis.call('HSET', rec, 'envelope', envelope, 'attempt', attempt, 'state', 'QUEUED',
      'node', node, 'epoch', epoch, 'accepted_at', at)
    redis.call('HSETNX', rec, 'created_at', at)
    redis.call('HSET', KEYS[1], id, epoch)
    any = true
    out[i] = {'A', id, 'QUEUED'}
  end
end
if any then redis.call('SADD', KEYS[4], node) end
return cmsgpack.pack(out)
