-- State transitions of running tasks of one partition, a batch per call, fenced by owner
-- epoch: only the node whose in-flight hash holds the task with its epoch may move it,
-- so a node that lost the task to a recovery cannot complete it; the first completion
-- wins.
-- KEYS[1] the node's in-flight hash, KEYS[2] retry zset, KEYS[3] dlq zset, KEYS[4] the
-- partition's set of nodes with in-flight tasks, KEYS[4 + i] the record of the i-th op.
-- ARGV: node, epoch, now, result ttl (s), done channel prefix (plus a reply_to is the
--       sender's channel), retry channel, and a msgpack array of ops (Transition.packed):
--       {op, id, started_at, result, error type, error message, traceback, retry_at,
--        dead reason, publish}
--   start: mark RUNNING.   ok: SUCCEEDED with the result; announced when publish is 1.
--   retry: RETRY_SCHEDULED, due at retry_at.   dead: FAILED, into the DLQ, announced.
-- A success leaves a slim record (what its result and status need: no envelope, no
-- errors) that expires after the result TTL.
-- Returns a string with one letter per op: K applied, S stale (fenced off). A final op
-- that finds its task already final under this same epoch answers K and writes nothing:
-- it is this node's own write replayed after a lost reply.
local node, epoch, now, ttl = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local done_prefix, retry_channel = ARGV[5], ARGV[6]
local KEEP = {'envelope', 'reply_to', 'node', 'attempt', 'replays', 'completions',
  'created_at', 'accepted_at'}

local function announce(rec, id)
  local reply_to = redis.call('HGET', rec, 'reply_to')
  if reply_to then redis.call('PUBLISH', done_prefix .. reply_to, id) end
end

local function succeed(rec, id, result, started_at, publish)
  local f = redis.call('HMGET', rec, unpack(KEEP))
  local key, name = '', ''
  if f[1] then key, name = envelope_head(f[1]) end
  if publish == 1 and f[2] then redis.call('PUBLISH', done_prefix .. f[2], id) end
  redis.call('DEL', rec)  -- rebuilt small: a hash never shrinks back to its compact form
  redis.call('HSET', rec, 'state', 'SUCCEEDED', 'result', result, 'name', name, 'key', key,
    'node', f[3] or node, 'epoch', epoch, 'attempt', f[4] or '1',
    'completions', tonumber(f[6] or '0') + 1, 'started_at', started_at, 'finished_at', now)
  if f[5] then redis.call('HSET', rec, 'replays', f[5]) end
  if f[7] then redis.call('HSET', rec, 'created_at', f[7]) end
  if f[8] then redis.call('HSET', rec, 'accepted_at', f[8]) end
  redis.call('EXPIRE', rec, ttl)
end

local out = {}
for i, t in ipairs(cmsgpack.unpack(ARGV[7])) do
  local op, id, started_at = t[1], t[2], t[3]
  local rec = KEYS[4 + i]
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
      succeed(rec, id, t[4], started_at, t[10])
    else
      redis.call('HSET', rec, 'error_type', t[5], 'error_message', t[6],
        'traceback', t[7], 'started_at', started_at, 'last_failure_at', now)
      redis.call('HSETNX', rec, 'first_failure_at', now)
      if op == 'retry' then
        local attempt = tonumber(redis.call('HGET', rec, 'attempt') or '1')
        redis.call('HSET', rec, 'state', 'RETRY_SCHEDULED', 'redeliver_attempt', attempt + 1)
        redis.call('ZADD', KEYS[2], t[8], id)
        redis.call('PUBLISH', retry_channel, t[8])
      else
        redis.call('HSET', rec, 'state', 'FAILED', 'finished_at', now, 'dead_reason', t[9])
        redis.call('HINCRBY', rec, 'completions', 1)
        redis.call('ZADD', KEYS[3], now, id)
        announce(rec, id)
      end
    end
    table.insert(out, 'K')
  end
end
if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('SREM', KEYS[4], node) end
return table.concat(out)
