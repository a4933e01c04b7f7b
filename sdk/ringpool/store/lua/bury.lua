-- Dead-letter a task that waits in the retry set but can no longer be re-dispatched
-- (its task name is gone, its envelope is refused). Leaves it alone if it moved on.
-- KEYS[1] retry zset, KEYS[2] dlq zset. ARGV: id, record key, now, error type,
-- message, done channel. Returns 1 when buried.
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', ARGV[2], 'state', 'FAILED', 'finished_at', ARGV[3], 'last_failure_at', ARGV[3],
  'error_type', ARGV[4], 'error_message', ARGV[5], 'dead_reason', 'permanent')
redis.call('HSETNX', ARGV[2], 'first_failure_at', ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('PUBLISH', ARGV[6], ARGV[1])
return 1
