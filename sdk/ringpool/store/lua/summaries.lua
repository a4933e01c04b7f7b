-- The summary rows of listed tasks of one partition that pass a listing's filters.
-- KEYS[i] the record of the i-th task.
-- ARGV: state, name, error, key and node patterns (anchored Lua patterns, '' = any;
--       state '' = any), then the id and the listed score ('' = none) of each task.
-- Returns a row per task kept, in order: {id, score, key, name, state, attempt, node,
-- error type, error message (cut), replays, accepted_at, started_at, finished_at,
-- progress (the latest a running task reported)}. A task without a record (purged or
-- expired meanwhile) has empty fields: it is kept only when nothing is filtered.
local state, name_pattern, error_pattern, key_pattern = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local node_pattern = ARGV[5]
local FIELDS = {'state', 'attempt', 'node', 'error_type', 'error_message', 'replays',
  'accepted_at', 'started_at', 'finished_at', 'envelope', 'key', 'name', 'progress'}
local MESSAGE_CHARS = 300
local filtered = name_pattern ~= '' or error_pattern ~= '' or key_pattern ~= ''
  or node_pattern ~= ''
local rows = {}
for i, rec in ipairs(KEYS) do
  local id, score = ARGV[4 + 2 * i], ARGV[5 + 2 * i]
  local f = redis.call('HMGET', rec, unpack(FIELDS))
  local key, name = f[11] or '', f[12] or ''
  if f[10] then
    local task = envelope_fields(f[10])
    key, name = task.key, task.name
  end
  local error_type = f[4] or ''
  local keep = (state == '' or f[1] == state) and not (filtered and not f[1])
    and (name_pattern == '' or string.find(name, name_pattern))
    and (error_pattern == '' or string.find(error_type, error_pattern))
    and (key_pattern == '' or string.find(key, key_pattern))
    and (node_pattern == '' or string.find(f[3] or '', node_pattern))
  if keep then
    rows[#rows + 1] = {id, score, key, name, f[1] or '', f[2] or '', f[3] or '', error_type,
      string.sub(f[5] or '', 1, MESSAGE_CHARS), f[6] or '', f[7] or '', f[8] or '', f[9] or '',
      f[13] or ''}
  end
end
return rows
