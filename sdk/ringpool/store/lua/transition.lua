-- State transitions of running tasks, a batch per round trip, fenced by owner epoch:
-- only the node whose in-flight hash holds the task with its epoch may move it, so a
-- node that lost the task to a recovery cannot complete it; the first completion wins.
-- KEYS[1] in-flight hash, KEYS[2] retry zset, KEYS[3] dlq zset.
-- ARGV: epoch, now, result ttl (s), record prefix, done channel, retry channel, and a
--       msgpack array of {op, id, a, b, c, d, publish, started_at} per op.
-- Returns a string with one letter per op: K applied, S stale (fenced off). A final op
-- that finds its task already final under this same epoch answers K and writes nothing:
-- it is this node's own write replayed after a lost reply.
--   start: mark RUNNING.           ok: a = result JSON.
--   retry: a, b, c = error type, message, traceback; d = due time.
--   dead:  a, b, c as retry; d = extra reason (may be empty).
local epoch, now, ttl, prefix = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local done_channel, retry_channel = ARGV[5], ARGV[6]
local out = {}
for _, t in ipairs(cmsgpack.unpack(ARGV[7])) do
  local op, id = t[1], t[2]
  local rec = prefix .. id
  if redis.call('HGET', KEYS[1], id) ~= epoch then
    local final = (op == 'ok' or op == 'dead')
      and redis.call('HGET', rec, 'epoch') == epoch
      and (redis.call('HGET', rec, 'state') == (op == 'ok' and 'SUCCEEDED' or 'FAILED'))
    table.insert(out, final and 'K' or 'S')
  elseif op == 'start' then
    redis.call('HSET', rec, 'state', 'RUNNING', 'started_at', t[8])
    table.insert(out, 'K')
  else
    redis.call('HDEL', KEYS[1], id)
    if op == 'ok' then
      redis.call('HSET', rec, 'state', 'SUCCEEDED', 'result', t[3], 'started_at', t[8],
        'finished_at', now)
      redis.call('HINCRBY', rec, 'completions', 1)
      redis.call('EXPIRE', rec, ttl)
      if t[7] == 1 then redis.call('PUBLISH', done_channel, id) end
    else
      redis.call('HSET', rec, 'error_type', t[3], 'error_message', t[4],
        'traceback', t[5], 'started_at', t[8], 'last_failure_at', now)
      redis.call('HSETNX', rec, 'first_failure_at', now)
      if op == 'retry' then
        local attempt = tonumber(redis.call('HGET', rec, 'attempt') or '1')
        redis.call('HSET', rec, 'state', 'RETRY_SCHEDULED', 'redeliver_attempt', attempt + 1)
        redis.call('ZADD', KEYS[2], t[6], id)
        redis.call('PUBLISH', retry_channel, t[6])
      else
        redis.call('HSET', rec, 'state', 'FAILED', 'finished_at', now, 'dead_reason', t[6])
        redis.call('HINCRBY', rec, 'completions', 1)
        redis.call('ZADD', KEYS[3], now, id)
        redis.call('PUBLISH', done_channel, id)
      end
    end
    table.insert(out, 'K')
  end
end
return table.concat(out)
