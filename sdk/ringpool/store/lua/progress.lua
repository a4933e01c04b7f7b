-- Record the latest progress of running tasks, a batch per call (of one partition on a
-- Redis Cluster, of several on one Redis), fenced by owner epoch: only a task this node
-- still holds in flight under this epoch is written, so a record that finished (or moved
-- to another node, or expired) is never touched.
-- KEYS: KEYS[g] the node's in-flight hash in the g-th partition the call covers, then
-- KEYS[G + i] the record of the i-th report (G partitions).
-- ARGV: epoch, G, and a msgpack array of {id, value, meta (JSON or ''), at (text values),
--       g}.
-- Returns how many reports were written.
local epoch, partitions = ARGV[1], tonumber(ARGV[2])
local written = 0
for i, p in ipairs(cmsgpack.unpack(ARGV[3])) do
  if redis.call('HGET', KEYS[p[5]], p[1]) == epoch then
    redis.call('HSET', KEYS[partitions + i], 'progress', p[2], 'progress_meta', p[3],
      'progress_at', p[4])
    written = written + 1
  end
end
return written
