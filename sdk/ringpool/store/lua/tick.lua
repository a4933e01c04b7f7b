-- Claim one tick of a schedule, exactly once: only while the schedule's next tick is still
-- the one the caller read (a second leader, or a pass that raced a change, finds it moved
-- and writes nothing). The tick becomes a task held SCHEDULED until its time (due now), so
-- the delay firer sends it to its key's owner like any delayed task.
-- KEYS[1] the schedule's hash, KEYS[2] schedules zset, KEYS[3] scheduled zset,
-- KEYS[4] the new task's record.
-- ARGV: name, the next tick read, the tick to fire, ticks skipped, the tick after, task
--       id, envelope, delay wake channel. (Ticks are unix seconds worked out from Redis'
--       clock, which also stamps the new record.)
-- Returns 1 when claimed, 0 when the schedule moved on (or went, or is paused).
local name = ARGV[1]
local score = redis.call('ZSCORE', KEYS[2], name)
if not score or tonumber(score) ~= tonumber(ARGV[2]) then return 0 end
if redis.call('HGET', KEYS[1], 'paused') == '1' then return 0 end
local id, fire_at, at = ARGV[6], ARGV[3], now()
redis.call('HSET', KEYS[4], 'envelope', ARGV[7], 'attempt', 1, 'state', 'SCHEDULED',
  'created_at', at, 'accepted_at', at)
redis.call('ZADD', KEYS[3], fire_at, id)
redis.call('ZADD', KEYS[2], ARGV[5], name)
redis.call('HINCRBY', KEYS[1], 'fired', 1)
redis.call('HINCRBY', KEYS[1], 'skipped', tonumber(ARGV[4]))
redis.call('HSET', KEYS[1], 'last_tick_at', fire_at, 'last_task_id', id)
redis.call('PUBLISH', ARGV[8], fire_at)
return 1
