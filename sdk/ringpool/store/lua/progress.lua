-- Record the latest progress of running tasks, a batch per call, fenced by owner epoch:
-- only a task this node still holds in flight under this epoch is written, so a record
-- that finished (or moved to another node, or expired) is never touched.
-- KEYS[1] the node's in-flight hash, KEYS[1 + i] the record of the i-th report.
-- ARGV: epoch, and a msgpack array of {id, value, meta (JSON or ''), at} (text values).
-- Returns how many reports were written.
local epoch = ARGV[1]
local written = 0
for i, p in ipairs(cmsgpack.unpack(ARGV[2])) do
  if redis.call('HGET', KEYS[1], p[1]) == epoch then
    redis.call('HSET', KEYS[1 + i], 'progress', p[2], 'progress_meta', p[3], 'progress_at', p[4])
    written = written + 1
  end
end
return written
