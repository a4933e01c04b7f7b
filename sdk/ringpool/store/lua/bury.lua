-- Dead-letter a task that waits in the retry or scheduled zset but can no longer be
-- dispatched (its task name is gone, its envelope is refused, nodes kept refusing it).
-- Leaves it alone if it moved on.
-- KEYS[1] the zset it waits in, KEYS[2] dlq zset, KEYS[3] the task's record (one
-- partition).
-- ARGV: id, error type, message, dead reason, done channel prefix. Returns 1 when buried.
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
local at = now()
redis.call('HSET', KEYS[3], 'state', 'FAILED', 'finished_at', at, 'last_failure_at', at,
  'error_type', ARGV[2], 'error_message', ARGV[3], 'dead_reason', ARGV[4])
redis.call('HSETNX', KEYS[3], 'first_failure_at', at)
redis.call('ZADD', KEYS[2], at, ARGV[1])
local reply_to = redis.call('HGET', KEYS[3], 'reply_to')
if reply_to then redis.call('PUBLISH', ARGV[5] .. reply_to, ARGV[1]) end
return 1
