-- The handoff leases of ordered routing keys (``Keys.order_lease``): a node starts a
-- key's ordered tasks only while it holds the key's lease, so two nodes never run one
-- key's ordered tasks at once when the key changes owner. A lease is a string, its
-- holder (``<node>:<epoch>``), with a TTL kept by Redis' clock (PX): a holder that stops
-- renewing (crashed, paused, cut off) loses it when the TTL runs out.
-- KEYS       the leases (on a Redis Cluster, all in one slot).
-- ARGV[1]    the op: take | renew | release.
-- ARGV[2]    the TTL in milliseconds, a positive integer (unused by release).
-- ARGV[3..]  the holder asking for each key, in KEYS order.
-- The whole call is checked before anything is written: a bad one changes nothing.
-- Replies, one per key. take: {1} granted (the lease was free, or already this
-- holder's: its TTL starts over), or {0, holder, remaining ms}. renew: 1 when the lease
-- was still this holder's (its TTL starts over), else 0. release: 1 when it was this
-- holder's (deleted), else 0.
local op, ttl = ARGV[1], tonumber(ARGV[2])
if #KEYS == 0 then
  return redis.error_reply('ERR no lease keys given')
end
if op ~= 'take' and op ~= 'renew' and op ~= 'release' then
  return redis.error_reply('ERR unknown lease op: ' .. tostring(op))
end
if #ARGV ~= #KEYS + 2 then
  return redis.error_reply('ERR one holder per lease key expected')
end
if op ~= 'release' and not (ttl and ttl >= 1 and ttl == math.floor(ttl)) then
  return redis.error_reply('ERR the lease TTL must be a positive number of ms: ' .. ARGV[2])
end
for i, key in ipairs(KEYS) do
  if ARGV[i + 2] == '' then
    return redis.error_reply('ERR empty lease holder for ' .. key)
  end
  local kind = redis.call('TYPE', key).ok
  if kind ~= 'string' and kind ~= 'none' then
    return redis.error_reply('WRONGTYPE the lease key ' .. key .. ' holds a ' .. kind)
  end
end

local out = {}
for i, key in ipairs(KEYS) do
  local holder = ARGV[i + 2]
  local current = redis.call('GET', key)
  if op == 'take' then
    if not current or current == holder then
      redis.call('SET', key, holder, 'PX', ttl)
      out[i] = {1}
    else
      out[i] = {0, current, redis.call('PTTL', key)}
    end
  elseif current == holder then
    if op == 'renew' then
      redis.call('PEXPIRE', key, ttl)
    else
      redis.call('DEL', key)
    end
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
