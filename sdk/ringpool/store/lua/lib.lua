-- Shared by every script (the store puts this in front of each one).
-- now(): Redis' own clock, so that due times, leases and dead-letter times written by
--   one host compare right with those read by another (Redis 7 replicates the effects
--   of a script, so reading TIME before writing is allowed).
-- epoch_at_most(epoch, bound): whether an owner epoch (a ZooKeeper zxid, as decimal
--   text) is at most bound, compared exactly (zxids can pass 2^53, Lua's exact range).
local function now()
  local t = redis.call('TIME')
  return t[1] .. '.' .. string.format('%06d', tonumber(t[2]))
end

local function epoch_at_most(epoch, bound)
  if #epoch ~= #bound then return #epoch < #bound end
  return epoch <= bound
end
