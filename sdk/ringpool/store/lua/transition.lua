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
-- A success keeps these fields when they are there, and drops the rest (the envelope,
-- a traceback) with the record's old, large encoding.
local KEPT = {'node', 'attempt', 'completions', 'replays', 'created_at', 'accepted_at',
  'error_type', 'error_message', 'first_failure_at', 'last_failure_at'}

local function announce(rec, id)
  local reply_to = redis.call('HGET', rec, 'reply_to')
  if reply_to then redis.call('PUBLISH', done_prefix .. reply_to, id) end
end

local function succeed(rec, id, result, started_at, publish)
  local head = redis.call('HMGET', rec, 'envelope', 'reply_to')
  local key, name = '', ''
  if head[1] then key, name = envelope_head(head[1]) end
  if publish == 1 and head[2] then redis.call('PUBLISH', done_prefix .. head[2], id) end
  local kept = redis.call('HMGET', rec, unpack(KEPT))
  local fields = {'state', 'SUCCEEDED', 'result', result, 'name', name, 'key', key,
    'epoch', epoch, 'started_at', started_at, 'finished_at', now}
  for i, field in ipairs(KEPT) do
    if kept[i] then fields[#fields + 1] = field; fields[#fields + 1] = kept[i] end
  end
  redis.call('DEL', rec)  -- rebuilt small: a hash never shrinks back to its compact form
  redis.call('HSET', rec, unpack(fields))
  redis.call('HINCRBY', rec, 'completions', 1)
  redis.call('HSETNX', rec, 'node', node)
  redis.call('HSETNX', rec, 'attempt', 1)
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
