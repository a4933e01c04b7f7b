-- Durable accept of a batch, in one call: the tasks of one partition (a Redis Cluster),
-- or of several (one Redis).
-- KEYS: for each partition g the call covers, five keys: KEYS[5g - 4] this node's
-- in-flight hash (task id -> owner epoch), KEYS[5g - 3] retry zset, KEYS[5g - 2] dlq
-- zset, KEYS[5g - 1] the partition's set of nodes with in-flight tasks, KEYS[5g]
-- scheduled zset; then for the i-th task, KEYS[5G + 2i - 1] its record and
-- KEYS[5G + 2i] its fingerprint (G partitions).
-- ARGV: node, epoch, fingerprint ttl (s), G, the channel that wakes the delay firer, and
--       a msgpack array of {id, source, envelope, attempt, reply_to, by id, eta, g} per
--       task ("by id": the fingerprint is the id's own, and holds "1" rather than the id;
--       g: its partition).
-- Returns a msgpack array of {code, task id, state}: A accepted, D duplicate of that task
-- id (state left to the caller), X refused (a record with that id exists), N not
-- redeliverable (with its state).
-- A client task is new when its fingerprint is free and no record has its id: an id
-- that is taken is refused, never written over. A new one whose eta is still ahead (by
-- Redis' clock) is held SCHEDULED in the scheduled zset (not in flight: the coordinator
-- fires it at its eta). A retry, replay or fired scheduled task is accepted only while
-- it is still waiting in the retry zset, the DLQ or the scheduled zset, and leaves it
-- here.
local node, epoch, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local base = 5 * tonumber(ARGV[4])
local WAITING = {retry = 3, replay = 2, scheduled = 0}  -- KEYS[5g - offset]
local at = now()
local out = {}
local holding = {}
local soonest = nil
for i, t in ipairs(cmsgpack.unpack(ARGV[6])) do
  local id, source, envelope, attempt, reply_to, by_id, eta, g = unpack(t)
  eta = tonumber(eta)
  local rec, fp = KEYS[base + 2 * i - 1], KEYS[base + 2 * i]
  local holds = (by_id == 1) and '1' or id
  local accepted = false
  if source == 'client' then
    local holder = redis.call('GET', fp)
    if holder then
      if holder == '1' then holder = id end
      out[i] = {'D', holder, ''}
    elseif redis.call('EXISTS', rec) == 1 then
      out[i] = {'X', id, redis.call('HGET', rec, 'state') or ''}
    else
      redis.call('SET', fp, holds, 'EX', ttl)
      accepted = true
    end
  else
    if redis.call('ZREM', KEYS[5 * g - WAITING[source]], id) == 1 then
      accepted = true
      redis.call('HDEL', rec, 'claims')
      if source == 'replay' then
        local holder = redis.call('GET', fp)
        if not holder or holder == holds then redis.call('SET', fp, holds, 'EX', ttl) end
        redis.call('PERSIST', rec)
        redis.call('HINCRBY', rec, 'replays', 1)
        redis.call('HDEL', rec, 'finished_at', 'result')
      end
    else
      out[i] = {'N', id, redis.call('HGET', rec, 'state') or ''}
    end
  end
  if accepted then
    local waits = source == 'client' and eta > tonumber(at)
    local fields = {'envelope', envelope, 'attempt', attempt, 'accepted_at', at}
    if waits then
      fields[#fields + 1] = 'state'; fields[#fields + 1] = 'SCHEDULED'
    else
      for _, v in ipairs({'state', 'QUEUED', 'node', node, 'epoch', epoch}) do
        fields[#fields + 1] = v
      end
    end
    if reply_to ~= '' then fields[#fields + 1] = 'reply_to'; fields[#fields + 1] = reply_to end
    if source == 'client' then  -- a new task (a redelivery keeps when it was created)
      fields[#fields + 1] = 'created_at'; fields[#fields + 1] = at
    end
    redis.call('HSET', rec, unpack(fields))
    if waits then
      redis.call('ZADD', KEYS[5 * g], eta, id)
      if not soonest or eta < soonest then soonest = eta end
      out[i] = {'A', id, 'SCHEDULED'}
    else
      redis.call('HSET', KEYS[5 * g - 4], id, epoch)
      holding[g] = true
      out[i] = {'A', id, 'QUEUED'}
    end
  end
end
for g in pairs(holding) do redis.call('SADD', KEYS[5 * g - 1], node) end
if soonest then redis.call('PUBLISH', ARGV[5], soonest) end
return cmsgpack.pack(out)
