-- Durable accept of a batch, in one round trip.
-- KEYS[1] this node's in-flight hash (task id -> owner epoch), KEYS[2] retry zset,
-- KEYS[3] dlq zset, KEYS[4] set of nodes with in-flight hashes, KEYS[5] scheduled zset.
-- ARGV: node, epoch, fingerprint ttl (s), record key prefix, a msgpack array of
--       {id, source, envelope, attempt, fingerprint key, eta} per task, and the channel
--       that wakes the delay firer. (The fingerprint and record keys share the cluster's
--       hash tag, so they live in the same slot.)
-- Returns a msgpack array of {code, task id, state}: A accepted, D duplicate of that
-- task id, X refused (a record with that id exists), N not redeliverable.
-- A client task is new when its fingerprint is free and no record has its id: an id
-- that is taken is refused, never written over. A new one whose eta is still ahead (by
-- Redis' clock) is held SCHEDULED in the scheduled zset (not in flight: the coordinator
-- fires it at its eta). A retry, replay or fired scheduled task is accepted only while
-- it is still waiting in the retry zset, the DLQ or the scheduled zset, and leaves it
-- here.
local node, epoch, ttl, prefix = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local tasks = cmsgpack.unpack(ARGV[5])
local WAITING = {retry = KEYS[2], replay = KEYS[3], scheduled = KEYS[5]}
local at = now()
local out = {}
local any = false
local soonest = nil
for i, t in ipairs(tasks) do
  local id, source, envelope, attempt, fp, eta = t[1], t[2], t[3], t[4], t[5], tonumber(t[6])
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
    if redis.call('ZREM', WAITING[source], id) == 1 then
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
  if accepted and source == 'client' and eta > tonumber(at) then
    redis.call('HSET', rec, 'envelope', envelope, 'attempt', attempt, 'state', 'SCHEDULED',
      'accepted_at', at)
    redis.call('HSETNX', rec, 'created_at', at)
    redis.call('ZADD', KEYS[5], eta, id)
    if not soonest or eta < soonest then soonest = eta end
    out[i] = {'A', id, 'SCHEDULED'}
  elseif accepted then
    redis.call('HSET', rec, 'envelope', envelope, 'attempt', attempt, 'state', 'QUEUED',
      'node', node, 'epoch', epoch, 'accepted_at', at)
    redis.call('HSETNX', rec, 'created_at', at)
    redis.call('HSET', KEYS[1], id, epoch)
    any = true
    out[i] = {'A', id, 'QUEUED'}
  end
end
if any then redis.call('SADD', KEYS[4], node) end
if soonest then redis.call('PUBLISH', ARGV[6], soonest) end
return cmsgpack.pack(out)
