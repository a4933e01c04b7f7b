-- Shared by the listing scripts (zlist.lua, hlist.lua), which start with this text: a
-- task's summary row, kept only when it passes the listing's filters.
-- The envelope is read only as far as its key and name: protobuf writes the fields in
-- number order, and task_id (1), key (2) and name (3) all come before the payload.
local function envelope_head(buf)
  local pos, size, found = 1, #buf, {}
  local function varint()
    local value, scale = 0, 1
    while pos <= size do
      local byte = string.byte(buf, pos)
      pos = pos + 1
      value = value + (byte % 128) * scale
      if byte < 128 then return value end
      scale = scale * 128
    end
    return value
  end
  while pos <= size do
    local tag = varint()
    local field, wire = math.floor(tag / 8), tag % 8
    if field > 3 or wire ~= 2 then break end
    local length = varint()
    found[field] = string.sub(buf, pos, pos + length - 1)
    pos = pos + length
  end
  return found[2] or '', found[3] or ''
end

local SUMMARY_FIELDS = {'state', 'attempt', 'node', 'error_type', 'error_message', 'replays',
  'accepted_at', 'started_at', 'finished_at', 'envelope', 'progress'}
local MESSAGE_CHARS = 300

-- {id, score, key, name, state, attempt, node, error type, error message (cut), replays,
--  accepted_at, started_at, finished_at, progress}, or nil when a filter leaves it out.
-- Filters are anchored Lua patterns ('' = any) over the name, error type, key and node;
-- state '' = any. A task without a record (purged or expired meanwhile) has empty
-- fields: it passes only when nothing is filtered.
local function summary(prefix, id, score, state, name_pattern, error_pattern, key_pattern,
                       node_pattern)
  local f = redis.call('HMGET', prefix .. id, unpack(SUMMARY_FIELDS))
  if state ~= '' and f[1] ~= state then return nil end
  local filtered = name_pattern ~= '' or error_pattern ~= '' or key_pattern ~= ''
    or node_pattern ~= ''
  if filtered and not f[1] then return nil end
  if node_pattern ~= '' and not string.find(f[3] or '', node_pattern) then return nil end
  local key, name = '', ''
  if f[10] then key, name = envelope_head(f[10]) end
  local error_type = f[4] or ''
  if name_pattern ~= '' and not string.find(name, name_pattern) then return nil end
  if error_pattern ~= '' and not string.find(error_type, error_pattern) then return nil end
  if key_pattern ~= '' and not string.find(key, key_pattern) then return nil end
  return {id, score, key, name, f[1] or '', f[2] or '', f[3] or '', error_type,
    string.sub(f[5] or '', 1, MESSAGE_CHARS), f[6] or '', f[7] or '', f[8] or '', f[9] or '',
    f[11] or ''}
end
