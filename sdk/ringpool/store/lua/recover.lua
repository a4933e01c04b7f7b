-- Move a node's in-flight tasks back to the retry set, due now, without using an attempt.
-- Used for a dead member (counting recoveries: a task recovered more than the limit is a
-- poison task and goes to the DLQ) and for a draining node handing back what it could
-- not finish, or found in flight without running it (not counted). Entries stamped with
-- keep_epoch belong to the live owner.
-- KEYS[1] in-flight hash, KEYS[2] retry zset, KEYS[3] dlq zset.
-- ARGV: now, keep_epoch ('' = none), max recoveries (0 = do not count), record prefix,
--       done channel, retry channel, limit, and optionally a msgpack list of the only
--       task ids to consider.
local now, keep, max_rec, prefix = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local recovered, poisoned, left = 0, 0, 0
local entries
if ARGV[8] then
  entries = {}
  for _, id in ipairs(cmsgpack.unpack(ARGV[8])) do
    local epoch = redis.call('HGET', KEYS[1], id)
    if epoch then table.insert(entries, id); table.insert(entries, epoch) end
  end
else
  entries = redis.call('HGETALL', KEYS[1])
end
local limit = tonumber(ARGV[7])
for i = 1, #entries, 2 do
  local id, epoch = entries[i], entries[i + 1]
  if epoch ~= keep then
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
          redis.call('HSET', rec, 'state', 'FAILED', 'finished_at', now, 'last_failure_at', now,
            'error_type', 'PoisonTask', 'dead_reason', 'poison',
            'error_message', 'recovered from ' .. (count - 1) .. ' crashed nodes; giving up')
          redis.call('HSETNX', rec, 'first_failure_at', now)
          redis.call('ZADD', KEYS[3], now, id)
          redis.call('PUBLISH', ARGV[5], id)
          poisoned = poisoned + 1
        else
          local attempt = redis.call('HGET', rec, 'attempt') or '1'
          redis.call('HSET', rec, 'state', 'RETRY_SCHEDULED', 'redeliver_attempt', attempt)
          redis.call('ZADD', KEYS[2], now, id)
          recovered = recovered + 1
        end
      end
    end
  end
end
if recovered > 0 then redis.call('PUBLISH', ARGV[6], now) end
return {recovered, poisoned, left}
