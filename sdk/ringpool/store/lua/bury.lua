-- Dead-letter a task that waits in the retry set but can no longer be re-dispatched
-- (its task name is gone, its envelope is refused). Leaves it alone if it moved on.
-- KEYS[1] retry zset, KEYS[2] dlq zset, KEYS[3] the task's record (one partition).
-- ARGV: id, now, error type, message, done channel prefix. Returns 1 when buried.
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[3], 'state', 'FAILED', 'finished_at', ARGV[2], 'last_failure_at', ARGV[2],
  'error_type', ARGV[3], 'error_message', ARGV[4], 'dead_reason', 'permanent')
redis.call('HSETNX', KEYS[3], 'first_failure_at', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
local reply_to = redis.call('HGET', KEYS[3], 'reply_to')
if reply_to then redis.call('PUBLISH', ARGV[5] .. reply_to, ARGV[1]) end
return 1
