-- Take tokens from the cluster-wide buckets of rate-limited tasks: one call carries a
-- node's asks for every task name it has starts waiting for. A bucket refills at its
-- rate, by the Redis server's clock (one clock for every node), up to its burst; a
-- bucket left alone until it is full again expires (a missing bucket is a full one).
-- KEYS[i] the bucket of the i-th ask (a hash: tokens, at).
-- ARGV[1] a msgpack array of {wanted, rate (tokens a second), burst} per key.
-- Returns a msgpack array of {granted, wait}: wait, in seconds (as text), is how long
-- until the bucket holds what is worth asking again for (half a burst, at least 1
-- token, at most what is still wanted); 0 when everything wanted was granted.
local at_now = tonumber(now())
local out = {}
for i, ask in ipairs(cmsgpack.unpack(ARGV[1])) do
  local wanted, rate, burst = ask[1], tonumber(ask[2]), tonumber(ask[3])
  local bucket = redis.call('HMGET', KEYS[i], 'tokens', 'at')
  local tokens = tonumber(bucket[1]) or burst
  local at = tonumber(bucket[2]) or at_now
  tokens = math.min(burst, tokens + math.max(0, at_now - at) * rate)
  local granted = math.min(wanted, math.floor(tokens))
  tokens = tokens - granted
  local wait = 0
  if granted < wanted then
    local worth = math.max(1, math.min(wanted - granted, burst / 2))
    wait = math.max(0, (worth - tokens) / rate)
  end
  redis.call('HSET', KEYS[i], 'tokens', string.format('%.17g', tokens),
    'at', string.format('%.17g', at_now))
  redis.call('PEXPIRE', KEYS[i], math.ceil((burst - tokens) / rate * 1000) + 1000)
  out[i] = {granted, string.format('%.17g', wait)}
end
return cmsgpack.pack(out)
