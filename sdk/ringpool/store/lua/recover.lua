-- Move tasks of a node's in-flight hashes back to the retry set, due now, without using
-- an attempt. Used for a dead member (a crash: counting recoveries, a task recovered more
-- than the limit is a poison task and goes to the DLQ), for a node reclaiming what an
-- earlier life of it held (counted after a restart, not after a lost ZooKeeper
-- session), and for a draining node handing back what it could not finish, or found in
-- flight without running it (not counted).
-- Fenced: only entries whose owner epoch is at most max_epoch move, so a later
-- registration's tasks (a live owner's) are never taken.
-- KEYS: for each partition g the call covers (one on a Redis Cluster), four keys:
-- KEYS[4g - 3] the node's in-flight hash, KEYS[4g - 2] retry zset, KEYS[4g - 1] dlq zset,
-- KEYS[4g] the partition's set of nodes with in-flight tasks; then KEYS[4G + i] the
-- record of the i-th id (G partitions).
-- ARGV: node, max_epoch ('' = any), max recoveries (0 = do not count), done channel
--       prefix, retry channel, G, and a msgpack list of {task id, g} to consider (ids no
--       longer in the hash are left alone).
-- Returns {recovered, poisoned}.
local node, bound, max_rec = ARGV[1], ARGV[2], tonumber(ARGV[3])
local partitions = tonumber(ARGV[6])
local at = now()
local recovered, poisoned = 0, 0
for i, item in ipairs(cmsgpack.unpack(ARGV[7])) do
  local id, g = item[1], item[2]
  local inflight = KEYS[4 * g - 3]
  local epoch = redis.call('HGET', inflight, id)
  if epoch and (bound == '' or epoch_at_most(epoch, bound)) then
    redis.call('HDEL', inflight, id)
    local rec = KEYS[4 * partitions + i]
    local state = redis.call('HGET', rec, 'state')
    if state == 'QUEUED' or state == 'RUNNING' then
      local count = 0
      if max_rec > 0 then count = redis.call('HINCRBY', rec, 'recoveries', 1) end
      if max_rec > 0 and count > max_rec then
        redis.call('HSET', rec, 'state', 'FAILED', 'finished_at', at, 'last_failure_at', at,
          'error_type', 'PoisonTask', 'dead_reason', 'poison',
          'error_message', 'recovered from ' .. (count - 1) .. ' crashed nodes; giving up')
        redis.call('HSETNX', rec, 'first_failure_at', at)
        redis.call('ZADD', KEYS[4 * g - 1], at, id)
        local reply_to = redis.call('HGET', rec, 'reply_to')
        if reply_to then redis.call('PUBLISH', ARGV[4] .. reply_to, id) end
        poisoned = poisoned + 1
      else
        local attempt = redis.call('HGET', rec, 'attempt') or '1'
        redis.call('HSET', rec, 'state', 'RETRY_SCHEDULED', 'redeliver_attempt', attempt)
        redis.call('ZADD', KEYS[4 * g - 2], at, id)
        recovered = recovered + 1
      end
    end
  end
end
for g = 1, partitions do
  if redis.call('EXISTS', KEYS[4 * g - 3]) == 0 then redis.call('SREM', KEYS[4 * g], node) end
end
if recovered > 0 then redis.call('PUBLISH', ARGV[5], at) end
return {recovered, poisoned}
