-- Move tasks of a node's in-flight hashes back to the retry set, due now, without using
-- an attempt. Used for a dead member (counting recoveries: a task recovered more than the
-- limit is a poison task and goes to the DLQ) and for a draining node handing back what
-- it could not finish, or found in flight without running it (not counted). Entries
-- stamped with keep_epoch belong to the live owner and stay.
-- KEYS: for each partition g the call covers (one on a Redis Cluster), four keys:
-- KEYS[4g - 3] the node's in-flight hash, KEYS[4g - 2] retry zset, KEYS[4g - 1] dlq zset,
-- KEYS[4g] the partition's set of nodes with in-flight tasks; then KEYS[4G + i] the
-- record of the i-th id (G partitions).
-- ARGV: node, now, keep_epoch ('' = none), max recoveries (0 = do not count), done
--       channel prefix, retry channel, G, and a msgpack list of {task id, g} to consider
--       (ids no longer in the hash are left alone).
-- Returns {recovered, poisoned}.
local node, now, keep, max_rec = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local partitions = tonumber(ARGV[7])
local recovered, poisoned = 0, 0
for i, item in ipairs(cmsgpack.unpack(ARGV[8])) do
  local id, g = item[1], item[2]
  local inflight = KEYS[4 * g - 3]
  local epoch = redis.call('HGET', inflight, id)
  if epoch and epoch ~= keep then
    redis.call('HDEL', inflight, id)
    local rec = KEYS[4 * partitions + i]
    local state = redis.call('HGET', rec, 'state')
    if state == 'QUEUED' or state == 'RUNNING' then
      local count = 0
      if max_rec > 0 then count = redis.call('HINCRBY', rec, 'recoveries', 1) end
      if max_rec > 0 and count > max_rec then
        redis.call('HSET', rec, 'state', 'FAILED', 'finished_at', now, 'last_failure_at', now,
          'error_type', 'PoisonTask', 'dead_reason', 'poison',
          'error_message', 'recovered from ' .. (count - 1) .. ' crashed nodes; giving up')
        redis.call('HSETNX', rec, 'first_failure_at', now)
        redis.call('ZADD', KEYS[4 * g - 1], now, id)
        local reply_to = redis.call('HGET', rec, 'reply_to')
        if reply_to then redis.call('PUBLISH', ARGV[5] .. reply_to, id) end
        poisoned = poisoned + 1
      else
        local attempt = redis.call('HGET', rec, 'attempt') or '1'
        redis.call('HSET', rec, 'state', 'RETRY_SCHEDULED', 'redeliver_attempt', attempt)
        redis.call('ZADD', KEYS[4 * g - 2], now, id)
        recovered = recovered + 1
      end
    end
  end
end
for g = 1, partitions do
  if redis.call('EXISTS', KEYS[4 * g - 3]) == 0 then redis.call('SREM', KEYS[4 * g], node) end
end
if recovered > 0 then redis.call('PUBLISH', ARGV[6], now) end
return {recovered, poisoned}
