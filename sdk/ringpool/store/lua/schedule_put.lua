-- Add a schedule or replace its definition; one whose definition is unchanged is left
-- as it is (its next tick, its counts, paused or not), so publishing it again is free.
-- KEYS[1] the schedule's hash, KEYS[2] schedules zset (name -> next tick; inf: paused).
-- ARGV: name, digest of the definition, next tick (worked out from Redis' clock),
--       schedule wake channel, then field, value pairs of the definition.
-- Returns C created, R replaced (counts and pause kept, next tick recomputed), U unchanged.
local name, digest, next_at = ARGV[1], ARGV[2], ARGV[3]
local before = redis.call('HGET', KEYS[1], 'digest')
if before == digest then return 'U' end
local at = now()
for i = 5, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('HSET', KEYS[1], 'digest', digest, 'updated_at', at)
redis.call('HSETNX', KEYS[1], 'created_at', at)
if redis.call('HGET', KEYS[1], 'paused') == '1' then
  redis.call('ZADD', KEYS[2], 'inf', name)
else
  redis.call('ZADD', KEYS[2], next_at, name)
  redis.call('PUBLISH', ARGV[4], next_at)
end
if before then return 'R' end
return 'C'
