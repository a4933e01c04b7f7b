-- State transitions of running tasks, a batch per round trip, fenced by owner epoch:
-- only the node whose in-flight hash holds the task with its epoch may move it, so a
-- node that lost the task to a recovery cannot complete it; the first completion wins.
-- KEYS[1] in-flight hash, KEYS[2] retry zset, KEYS[3] dlq zset.
-- ARGV: epoch, result ttl (s), record key prefix, done channel, retry channel, and a
--       msgpack array of ops (Transition.packed):
--       {op, id, started_at, result, error type, error message, traceback, retry in (s),
--        dead reason, publish, result ttl (s; 0: the call's)}
--   start: mark RUNNING.   ok: SUCCEEDED with the result, kept for its result ttl (the
--   task's own, else the call's); announced when publish is 1.
--   retry: RETRY_SCHEDULED, due "retry in" seconds from now by Redis' clock.
--   dead: FAILED, into the DLQ, announced.
-- Record keys are the prefix plus the task id: they share the hash tag of KEYS.
-- Returns a string with one letter per op: K applied, S stale (fenced off). A final op
-- that finds its task already final under this same epoch answers K and writes nothing:
-- it is this node's own write replayed after a lost reply.
local epoch, ttl, prefix = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local done_channel, retry_channel = ARGV[4], ARGV[5]
local at = now()
local out = {}
for _, t in ipairs(cmsgpack.unpack(ARGV[6])) do
  local op, id, started_at = t[1], t[2], t[3]
  local rec = prefix .. id
  if redis.call('HGET', KEYS[1], id) ~= epoch then
    local final = (op == 'ok' or op == 'dead')
      and redis.call('HGET', rec, 'epoch') == epoch
      and (redis.call('HGET', rec, 'state') == (op == 'ok' and 'SUCCEEDED' or 'FAILED'))
    table.insert(out, final and 'K' or 'S')
  elseif op == 'start' then
    redis.call('HSET', rec, 'state', 'RUNNING', 'started_at', started_at)
    table.insert(out, 'K')
  else
    redis.call('HDEL', KEYS[1], id)
    if op == 'ok' then
      redis.call('HSET', rec, 'state', 'SUCCEEDED', 'result', t[4], 'started_at', started_at,
        'finished_at', at)
      redis.call('HINCRBY', rec, 'completions', 1)
      redis.call('EXPIRE', rec, (t[11] or 0) > 0 and t[11] or ttl)
      if t[10] == 1 then redis.call('PUBLISH', done_channel, id) end
    else
      redis.call('HSET', rec, 'error_type', t[5], 'error_message', t[6],
        'traceback', t[7], 'started_at', started_at, 'last_failure_at', at)
      redis.call('HSETNX', rec, 'first_failure_at', at)
      if op == 'retry' then
        local attempt = tonumber(redis.call('HGET', rec, 'attempt') or '1')
        redis.call('HSET', rec, 'state', 'RETRY_SCHEDULED', 'redeliver_attempt', attempt + 1)
        local due = string.format('%.6f', tonumber(at) + tonumber(t[8]))
        redis.call('ZADD', KEYS[2], due, id)
        redis.call('PUBLISH', retry_channel, due)
      else
        redis.call('HSET', rec, 'state', 'FAILED', 'finished_at', at, 'dead_reason', t[9])
        redis.call('HINCRBY', rec, 'completions', 1)
        redis.call('ZADD', KEYS[3], at, id)
        redis.call('PUBLISH', done_channel, id)
      end
    end
    table.insert(out, 'K')
  end
end
return table.concat(out)
