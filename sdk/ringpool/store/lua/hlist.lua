-- One page of a listing of a node's in-flight tasks (queued or running), by HSCAN.
-- KEYS[1] the node's in-flight hash (task id -> owner epoch).
-- ARGV: record prefix, HSCAN cursor ('0' = start), state, name, error, key and node
--       patterns (see summary), limit, budget.
-- Reads whole HSCAN batches until `limit` matches, `budget` entries or the end, so a page
-- may hold a few more rows than `limit`. Returns {next cursor ('0' at the end), scanned,
-- rows}; HSCAN may return an entry twice across pages, never skips one that stays.
local prefix, cursor = ARGV[1], ARGV[2]
local state, name_pattern, error_pattern, key_pattern = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local node_pattern = ARGV[7]
local limit, budget = tonumber(ARGV[8]), tonumber(ARGV[9])
local rows, scanned = {}, 0
repeat
  local reply = redis.call('HSCAN', KEYS[1], cursor, 'COUNT', 50)
  cursor = reply[1]
  local items = reply[2]
  for i = 1, #items, 2 do
    scanned = scanned + 1
    local row = summary(prefix, items[i], '', state, name_pattern, error_pattern, key_pattern,
      node_pattern)
    if row then rows[#rows + 1] = row end
  end
until cursor == '0' or #rows >= limit or scanned >= budget
return {cursor, scanned, rows}
