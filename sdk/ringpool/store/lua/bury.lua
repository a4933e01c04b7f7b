-- Dead-letter a task that waits in the retry or scheduled zset but can no longer be
-- dispatched (its task name is gone, its envelope is refused). Leaves it alone if it
-- moved on.
-- KEYS[1] the zset it waits in, KEYS[2] dlq zset, KEYS[3] the task's record.
-- ARGV: id, now, error type, message, done channel. Returns 1 when buried.
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[3], 'state', 'FAILED', 'finished_at', ARGV[2], 'last_failure_at', ARGV[2],
  'error_type', ARGV[3], 'error_message', ARGV[4], 'dead_reason', 'permanent')
redis.call('HSETNX', KEYS[3], 'first_failure_at', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('PUBLISH', ARGV[5], ARGV[1])
return 1
