-- Shared by the scripts that read a task's name and key (the store puts this text in
-- front of them). The envelope is read only as far as its key and name: protobuf writes
-- the fields in number order, and task_id (1), key (2) and name (3) all come before the
-- payload.
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
