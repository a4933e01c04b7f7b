-- State transitions of running tasks, a batch per call (of one partition on a Redis
-- Cluster, of several on one Redis), fenced by owner epoch: only the node whose in-flight
-- hash holds the task with its epoch may move it, so a node that lost the task to a
-- recovery cannot complete it; the first completion wins.
-- KEYS: for each partition g the call covers, four keys: KEYS[4g - 3] the node's
-- in-flight hash, KEYS[4g - 2] retry zset, KEYS[4g - 1] dlq zset, KEYS[4g] the
-- partition's set of nodes with in-flight tasks; then KEYS[4G + i] the record of the
-- i-th op (G partitions).
-- ARGV: node, epoch, result ttl (s), done channel prefix (plus a reply_to is the
--       sender's channel), retry channel, G, and a msgpack array of ops
--       (Transition.packed, then the op's partition g):
--       {op, id, started_at, result, error type, error message, traceback, retry in (s),
--        dead reason, publish, result ttl (s; 0: the call's), g}
--   start: mark RUNNING.   ok: SUCCEEDED with the result, kept for its result ttl (the
--   task's own, else the call's); announced when publish is 1.
--   retry: RETRY_SCHEDULED, due "retry in" seconds from now by Redis' clock.
--   dead: FAILED, into the DLQ, announced.
-- A success leaves a slim record (what its result and status need: no envelope, no
-- errors) that expires after the result TTL.
-- Returns a string with one letter per op: K applied, S stale (fenced off). A final op
-- that finds its task already final under this same epoch answers K and writes nothing:
-- it is this node's own write replayed after a lost reply.
local node, epoch, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local done_prefix, retry_channel = ARGV[4], ARGV[5]
local at = now()
-- A success keeps these fields when they are there, and drops the rest (the envelope,
-- a traceback) with the record's old, large encoding. (node and attempt are always
-- there: the accept wrote them.)
local KEPT = {'node', 'attempt', 'replays', 'created_at', 'accepted_at', 'error_type',
  'error_message', 'first_failure_at', 'last_failure_at'}

local function announce(rec, id)
  local reply_to = redis.call('HGET', rec, 'reply_to')
  if reply_to then redis.call('PUBLISH', done_prefix .. reply_to, id) end
end

local function succeed(rec, id, result, started_at, publish, result_ttl)
  local f = redis.call('HMGET', rec, 'envelope', 'reply_to', 'completions', unpack(KEPT))
  local task = envelope_fields(f[1] or '')
  if publish == 1 and f[2] then redis.call('PUBLISH', done_prefix .. f[2], id) end
  local fields = {'state', 'SUCCEEDED', 'result', result, 'name', task.name, 'key', task.key,
    'epoch', epoch, 'started_at', started_at, 'finished_at', at,
    'completions', tonumber(f[3] or '0') + 1}
  if task.schedule ~= '' then
    fields[#fields + 1] = 'schedule'; fields[#fields + 1] = task.schedule
  end
  if task.eta ~= 0 then
    fields[#fields + 1] = 'eta'; fields[#fields + 1] = string.format('%.6f', task.eta)
  end
  if task.group ~= '' then
    fields[#fields + 1] = 'group'; fields[#fields + 1] = task.group
  end
  if task.result_ttl_s ~= 0 then
    fields[#fields + 1] = 'result_ttl_s'; fields[#fields + 1] = task.result_ttl_s
  end
  for i, field in ipairs(KEPT) do
    if f[3 + i] then fields[#fields + 1] = field; fields[#fields + 1] = f[3 + i] end
  end
  redis.call('DEL', rec)  -- rebuilt small: a hash never shrinks back to its compact form
  redis.call('HSET', rec, unpack(fields))
  redis.call('EXPIRE', rec, result_ttl)
end

local partitions = tonumber(ARGV[6])
local out = {}
for i, t in ipairs(cmsgpack.unpack(ARGV[7])) do
  local op, id, started_at, g = t[1], t[2], t[3], t[12]
  local rec = KEYS[4 * partitions + i]
  local inflight = KEYS[4 * g - 3]
  if redis.call('HGET', inflight, id) ~= epoch then
    local final = (op == 'ok' or op == 'dead')
      and redis.call('HGET', rec, 'epoch') == epoch
      and (redis.call('HGET', rec, 'state') == (op == 'ok' and 'SUCCEEDED' or 'FAILED'))
    table.insert(out, final and 'K' or 'S')
  elseif op == 'start' then
    redis.call('HSET', rec, 'state', 'RUNNING', 'started_at', started_at)
    table.insert(out, 'K')
  else
    redis.call('HDEL', inflight, id)
    if op == 'ok' then
      succeed(rec, id, t[4], started_at, t[10], (t[11] or 0) > 0 and t[11] or ttl)
    else
      redis.call('HSET', rec, 'error_type', t[5], 'error_message', t[6],
        'traceback', t[7], 'started_at', started_at, 'last_failure_at', at)
      redis.call('HSETNX', rec, 'first_failure_at', at)
      if op == 'retry' then
        local attempt = tonumber(redis.call('HGET', rec, 'attempt') or '1')
        redis.call('HSET', rec, 'state', 'RETRY_SCHEDULED', 'redeliver_attempt', attempt + 1)
        local due = string.format('%.6f', tonumber(at) + tonumber(t[8]))
        redis.call('ZADD', KEYS[4 * g - 2], due, id)
        redis.call('PUBLISH', retry_channel, due)
      else
        redis.call('HSET', rec, 'state', 'FAILED', 'finished_at', at, 'dead_reason', t[9])
        redis.call('HINCRBY', rec, 'completions', 1)
        redis.call('ZADD', KEYS[4 * g - 1], at, id)
        announce(rec, id)
      end
    end
    table.insert(out, 'K')
  end
end
for g = 1, partitions do
  if redis.call('EXISTS', KEYS[4 * g - 3]) == 0 then redis.call('SREM', KEYS[4 * g], node) end
end
return table.concat(out)
