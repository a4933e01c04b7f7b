-- Pause a schedule (no tick fires until it is resumed; ticks meanwhile are not caught up)
-- or resume it from its next tick after now.
-- KEYS[1] the schedule's hash, KEYS[2] schedules zset.
-- ARGV: name, '1' to pause or '0' to resume, next tick (resume), schedule wake channel.
-- Returns 0 when there is no such schedule, else 1.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'paused', ARGV[2])
if ARGV[2] == '1' then
  redis.call('ZADD', KEYS[2], 'inf', ARGV[1])
else
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
  redis.call('PUBLISH', ARGV[4], ARGV[3])
end
return 1
