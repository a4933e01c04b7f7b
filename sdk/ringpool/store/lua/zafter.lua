-- The entries of a zset of task ids (a partition's DLQ or retry set) that come after a
-- cursor in walking order, within a score range: one step of a listing.
-- KEYS[1] the zset.
-- ARGV: order ('asc' | 'desc'), lowest and highest score ('' = unbounded, both
--       inclusive), cursor id and its score ('' = from the start of the range), count.
-- Returns {id, score, id, score, ...}: at most `count` entries, in walking order (by
-- score, equal scores by id). A cursor whose entry left meanwhile still resumes where it
-- was, so no entry is skipped.
local zset, desc = KEYS[1], ARGV[1] == 'desc'
local low, high, after, after_score = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local count = tonumber(ARGV[6])

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

local chunk
if desc then
  chunk = redis.call('ZREVRANGE', zset, start, start + count - 1, 'WITHSCORES')
else
  chunk = redis.call('ZRANGE', zset, start, start + count - 1, 'WITHSCORES')
end
local out = {}
for i = 1, #chunk, 2 do
  local value = tonumber(chunk[i + 1])
  if (desc and low ~= '' and value < tonumber(low))
      or (not desc and high ~= '' and value > tonumber(high)) then
    break
  end
  out[#out + 1] = chunk[i]
  out[#out + 1] = chunk[i + 1]
end
return out
