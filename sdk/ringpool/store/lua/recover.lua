-- Move a node's in-flight tasks back to the retry set, due now, without using an attempt.
-- Used for a dead member (a crash: counting recoveries, a task recovered more than the
-- limit is a poison task and goes to the DLQ), for a node reclaiming what an earlier life
-- of it held (counted after a restart, not after a lost ZooKeeper session), and for a
-- draining node handing back what it could not finish, or found in flight without
-- running it (not counted).
-- Fenced: only entries whose owner epoch is at most max_epoch move, so a later
-- registration's tasks (a live owner's) are never taken.
-- KEYS[1] in-flight hash, KEYS[2] retry zset, KEYS[3] dlq zset.
-- ARGV: max_epoch ('' = any), max recoveries (0 = do not count), record prefix,
--       done channel, retry channel, limit, and optionally a msgpack list of the only
--       task ids to consider.
-- Returns {recovered, poisoned, left}: left counts the entries over the limit.
local bound, max_rec, prefix = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local at = now()
local recovered, poisoned, left = 0, 0, 0
local entries
if ARGV[7] then
  entries = {}
  for _, id in ipairs(cmsgpack.unpack(ARGV[7])) do
    local epoch = redis.call('HGET', KEYS[1], id)
    if epoch then table.insert(entries, id); table.insert(entries, epoch) end
  end
else
  entries = redis.call('HGETALL', KEYS[1])
end
local limit = tonumber(ARGV[6])
for i = 1, #entries, 2 do
  local id, epoch = entries[i], entries[i + 1]
  if bound == '' or epoch_at_most(epoch, bound) then
    if recovered + poisoned >= limit then
      left = left + 1
    else
      redis.call('HDEL', KEYS[1], id)
      local rec = prefix .. id
      local state = redis.call('HGET', rec, 'state')
      if state == 'QUEUED' or state == 'RUNNING' then
        local count = 0
        if max_rec > 0 then count = redis.call('HINCRBY', rec, 'recoveries', 1) end
        if max_rec > 0 and count > max_rec then
          redis.call('HSET', rec, 'state', 'FAILED', 'finished_at', at, 'last_failure_at', at,
            'error_type', 'PoisonTask', 'dead_reason', 'poison',
            'error_message', 'recovered from ' .. (count - 1) .. ' crashed nodes; giving up')
          redis.call('HSETNX', rec, 'first_failure_at', at)
          redis.call('ZADD', KEYS[3], at, id)
          redis.call('PUBLISH', ARGV[4], id)
          poisoned = poisoned + 1
        else
          local attempt = redis.call('HGET', rec, 'attempt') or '1'
          redis.call('HSET', rec, 'state', 'RETRY_SCHEDULED', 'redeliver_attempt', attempt)
          redis.call('ZADD', KEYS[2], at, id)
          recovered = recovered + 1
        end
      end
    end
  end
end
if recovered > 0 then redis.call('PUBLISH', ARGV[5], at) end
return {recovered, poisoned, left}
