-- Durable accept of a batch, in one call: the tasks of one partition (a Redis Cluster),
-- or of several (one Redis).
-- KEYS: for each partition g the call covers, four keys: KEYS[4g - 3] this node's
-- in-flight hash (task id -> owner epoch), KEYS[4g - 2] retry zset, KEYS[4g - 1] dlq
-- zset, KEYS[4g] the partition's set of nodes with in-flight tasks; then for the i-th
-- task, KEYS[4G + 2i - 1] its record and KEYS[4G + 2i] its fingerprint (G partitions).
-- ARGV: node, epoch, now, fingerprint ttl (s), G, and a msgpack array of
--       {id, source, envelope, attempt, reply_to, by id, g} per task ("by id": the
--       fingerprint is the id's own, and holds "1" rather than the id; g: its partition).
-- Returns a msgpack array of {code, task id, state}: A accepted (QUEUED), D duplicate of
-- that task id (state left to the caller), N not redeliverable (with its state).
-- A client task is new when its fingerprint is; a retry or replay is accepted only
-- while it is still waiting in the retry set or the DLQ, and leaves it here.
local node, epoch, now, ttl = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local base = 4 * tonumber(ARGV[5])
local out = {}
local holding = {}
for i, t in ipairs(cmsgpack.unpack(ARGV[6])) do
  local id, source, envelope, attempt, reply_to, by_id, g = unpack(t)
  local rec, fp = KEYS[base + 2 * i - 1], KEYS[base + 2 * i]
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
    local waiting = (source == 'retry') and KEYS[4 * g - 2] or KEYS[4 * g - 1]
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
    local fields = {'envelope', envelope, 'attempt', attempt, 'state', 'QUEUED', 'node', node,
      'epoch', epoch, 'accepted_at', now}
    if reply_to ~= '' then fields[#fields + 1] = 'reply_to'; fields[#fields + 1] = reply_to end
    if source == 'client' then  -- a new task (a redelivery keeps when it was created)
      fields[#fields + 1] = 'created_at'; fields[#fields + 1] = now
    end
    redis.call('HSET', rec, unpack(fields))
    redis.call('HSET', KEYS[4 * g - 3], id, epoch)
    holding[g] = true
    out[i] = {'A', id, 'QUEUED'}
  end
end
for g in pairs(holding) do redis.call('SADD', KEYS[4 * g], node) end
return cmsgpack.pack(out)
