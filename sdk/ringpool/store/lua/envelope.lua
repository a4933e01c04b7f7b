-- Shared by the scripts that read what a task is from its envelope (the store puts this
-- text in front of them): envelope_fields(buf) walks the protobuf and returns its key
-- (field 2), name (3), eta (15, a double; 0 when unset), schedule (16), group (17) and
-- result_ttl_s (18; 0 when unset), skipping everything else by its wire type.
local function envelope_fields(buf)
  local pos, size = 1, #buf
  local found = {key = '', name = '', eta = 0, schedule = '', group = '', result_ttl_s = 0}
  local WANTED = {[2] = 'key', [3] = 'name', [16] = 'schedule', [17] = 'group'}
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
    if wire == 0 then
      local value = varint()
      if field == 18 then found.result_ttl_s = value end
    elseif wire == 1 then
      if field == 15 then found.eta = struct.unpack('<d', string.sub(buf, pos, pos + 7)) end
      pos = pos + 8
    elseif wire == 2 then
      local length = varint()
      if WANTED[field] then found[WANTED[field]] = string.sub(buf, pos, pos + length - 1) end
      pos = pos + length
    elseif wire == 5 then
      pos = pos + 4
    else
      break  -- not a wire type of proto3: stop rather than misread
    end
  end
  return found
end
