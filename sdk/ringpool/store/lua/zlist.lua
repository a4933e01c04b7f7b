-- One page of a listing of a zset of task ids: the DLQ (scored by dead-letter time) or
-- the retry set (by due time), walked by rank from a cursor, oldest or newest first.
-- KEYS[1] the zset.
-- ARGV: record prefix, order ('asc' | 'desc'), lowest and highest score ('' = unbounded,
--       both inclusive), cursor id and its score ('' = from the start of the range),
--       state, name, error, key and node patterns (see summary), limit, budget.
-- Reads at most `budget` entries and stops at `limit` matches. Returns {cursor id,
-- cursor score, scanned, rows}: the cursor is the last entry read ('' at the end), and a
-- cursor whose entry left meanwhile still resumes where it was, so no entry is skipped.
local zset, prefix, desc = KEYS[1], ARGV[1], ARGV[2] == 'desc'
local low, high, after, after_score = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local state, name_pattern, error_pattern, key_pattern = ARGV[7], ARGV[8], ARGV[9], ARGV[10]
local node_pattern = ARGV[11]
local limit, budget = tonumber(ARGV[12]), tonumber(ARGV[13])

-- The rank (in walking order) of the first entry to read.
local start
if after ~= '' then
  if desc then start = redis.call('ZREVRANK', zset, after) else start = redis.call('ZRANK', zset, after) end
  if start then
    start = start + 1
  else
    -- Equal scores sort by id: count the cursor's ties that came before it, then the rest.
    local before = 0
    for _, id in ipairs(redis.call('ZRANGEBYSCORE', zset, after_score, after_score)) do
      if (desc and id > after) or (not desc and id < after) then before = before + 1 end
    end
    if desc then
      start = redis.call('ZCOUNT', zset, '(' .. after_score, '+inf') + before
    else
      start = redis.call('ZCOUNT', zset, '-inf', '(' .. after_score) + before
    end
  end
elseif desc then
  start = (high == '') and 0 or redis.call('ZCOUNT', zset, '(' .. high, '+inf')
else
  start = (low == '') and 0 or redis.call('ZCOUNT', zset, '-inf', '(' .. low)
end

local rows, scanned, last, last_score, ended = {}, 0, '', '', false
while #rows < limit and scanned < budget do
  local want = math.min(100, budget - scanned)
  local chunk
  if desc then
    chunk = redis.call('ZREVRANGE', zset, start, start + want - 1, 'WITHSCORES')
  else
    chunk = redis.call('ZRANGE', zset, start, start + want - 1, 'WITHSCORES')
  end
  local read = 0
  for i = 1, #chunk, 2 do
    local id, score = chunk[i], chunk[i + 1]
    local value = tonumber(score)
    if (desc and low ~= '' and value < tonumber(low))
        or (not desc and high ~= '' and value > tonumber(high)) then
      ended = true
      break
    end
    read = read + 1
    last, last_score = id, score
    local row = summary(prefix, id, score, state, name_pattern, error_pattern, key_pattern,
      node_pattern)
    if row then
      rows[#rows + 1] = row
      if #rows >= limit then break end
    end
  end
  scanned = scanned + read
  -- A short chunk read to its end is the end of the zset.
  if ended or (#chunk < want * 2 and read == #chunk / 2) then
    ended = true
    break
  end
  start = start + read
end
if not ended then
  -- Stopped at the limit or the budget: is anything left to read in the range?
  local next
  if desc then next = redis.call('ZREVRANGE', zset, start, start, 'WITHSCORES')
  else next = redis.call('ZRANGE', zset, start, start, 'WITHSCORES') end
  ended = #next == 0
    or (desc and low ~= '' and tonumber(next[2]) < tonumber(low))
    or (not desc and high ~= '' and tonumber(next[2]) > tonumber(high))
end
if ended then last, last_score = '', '' end
return {last, last_score, scanned, rows}
