-- Cancel a task that has not finished: it never runs, or its run is told to stop.
-- KEYS (all of the task's partition): KEYS[1] the task's record, KEYS[2] retry zset,
-- KEYS[3] scheduled zset, KEYS[4] the in-flight hash of the node the caller read from
-- the record ('' node: any key), KEYS[5] the partition's set of nodes with in-flight tasks.
-- ARGV: id, that node, result ttl (s), done channel prefix, cancel channel prefix.
-- A waiting task (SCHEDULED, RETRY_SCHEDULED) leaves its zset; a task in flight
-- (QUEUED, RUNNING) leaves its node's in-flight hash, which fences off whatever that run
-- would record, and its node hears on its cancel channel to stop it. The record ends
-- CANCELLED (finished_at: Redis' clock) and expires after the result TTL; its sender
-- hears on its done channel.
-- Returns {code, state}: C cancelled (from state), F already finished (in state),
-- N no record, M in flight on another node than the caller read (state: that node).
local id, node = ARGV[1], ARGV[2]
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {'N', ''} end
if state == 'SCHEDULED' then
  redis.call('ZREM', KEYS[3], id)
elseif state == 'RETRY_SCHEDULED' then
  redis.call('ZREM', KEYS[2], id)
elseif state == 'QUEUED' or state == 'RUNNING' then
  local owner = redis.call('HGET', KEYS[1], 'node') or ''
  if owner ~= node then return {'M', owner} end
  redis.call('HDEL', KEYS[4], id)
  if redis.call('EXISTS', KEYS[4]) == 0 then redis.call('SREM', KEYS[5], node) end
  redis.call('PUBLISH', ARGV[5] .. owner, id)
else
  return {'F', state}
end
redis.call('HSET', KEYS[1], 'state', 'CANCELLED', 'finished_at', now())
redis.call('HINCRBY', KEYS[1], 'completions', 1)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
local reply_to = redis.call('HGET', KEYS[1], 'reply_to')
if reply_to then redis.call('PUBLISH', ARGV[4] .. reply_to, id) end
return {'C', state}
