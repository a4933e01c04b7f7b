-- Durable accept of a batch of one partition, in one call.
-- KEYS[1] this node's in-flight hash (task id -> owner epoch), KEYS[2] retry zset,
-- KEYS[3] dlq zset, KEYS[4] the partition's set of nodes with in-flight tasks; then for
-- the i-th task KEYS[3 + 2i] its record and KEYS[4 + 2i] its fingerprint.
-- ARGV: node, epoch, now, fingerprint ttl (s), and a msgpack array of
--       {id, source, envelope, attempt, reply_to, by id} per task ("by id": the
--       fingerprint is the id's own, and holds "1" rather than the id).
-- Returns a msgpack array of {code, task id, state}: A accepted (QUEUED), D duplicate of
-- that task id (state left to the caller), N not redeliverable (with its state).
-- A client task is new when its fingerprint is; a retry or replay is accepted only
-- while it is still waiting in the retry set or the DLQ, and leaves it here.
local node, epoch, now, ttl = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local out = {}
local any = false
for i, t in ipairs(cmsgpack.unpack(ARGV[5])) do
  local id, source, envelope, attempt, reply_to, by_id = t[1], t[2], t[3], t[4], t[5], t[6]
  local rec, fp = KEYS[3 + 2 * i], KEYS[4 + 2 * i]
  local holds = (by_id == 1) and '1' or id
  local accepted = false
  if source == 'client' then
    if redis.call('SET', fp, holds, 'NX', 'EX', ttl) then
      accepted = true
    else
      local holder = redis.call('GET', fp)
      if not holder or holder == '1' then holder = id end
      out[i] = {'D', holder, ''}
    end
  else
    local waiting = (source == 'retry') and KEYS[2] or KEYS[3]
    if redis.call('ZREM', waiting, id) == 1 then
      accepted = true
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
    redis.call('HSET', rec, 'envelope', envelope, 'attempt', attempt, 'state', 'QUEUED',
      'node', node, 'epoch', epoch, 'accepted_at', now)
    if reply_to ~= '' then redis.call('HSET', rec, 'reply_to', reply_to) end
    redis.call('HSETNX', rec, 'created_at', now)
    redis.call('HSET', KEYS[1], id, epoch)
    any = true
    out[i] = {'A', id, 'QUEUED'}
  end
end
if any then redis.call('SADD', KEYS[4], node) end
return cmsgpack.pack(out)
