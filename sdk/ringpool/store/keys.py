"""The Redis key layout of one cluster: every key and channel ringpool uses, and nowhere else.

Task state is split into a fixed number of partitions per cluster (``P``, recorded
once in Redis, 64 unless the first process asked for another count). A task lives
in partition ``slot % P``, its slot being the 16-bit hash its id carries
(``ringpool.core.slots``: the routing key's, or the task name's and idempotency
key's, or for a schedule's tick the schedule's), so a lookup by id needs nothing
else. A schedule lives in the partition of its name's slot, with its ticks' tasks.
Each partition's keys share the hash tag ``{C:p}`` (``C`` the cluster name, ``p`` the
partition): a Redis Cluster spreads the partitions over its slots, and every script,
which declares all its keys, runs on one partition (one slot) per call there. The same
layout serves a single Redis, where one call may cover several partitions.

Per partition ``p``:

    ringpool:{C:p}:task:<id>           hash     the task record (fields below)
    ringpool:{C:p}:fp:t:<id>           string   fingerprint of a task without an idempotency
                                                key ("1"), for the fingerprint TTL
    ringpool:{C:p}:fp:k:<n>:<name>:<ik>  string ... or with one (``<n>`` the name's length, so
                                                no two (name, key) pairs share one): the id of
                                                the task that holds it, for the fingerprint TTL
    ringpool:{C:p}:inflight:<node>     hash     task id -> owner epoch: accepted by <node>, not
                                                finished (the fence of every transition)
    ringpool:{C:p}:inflight-nodes      set      nodes whose in-flight hash here is not empty
                                                (a node leaves it with its last entry)
    ringpool:{C:p}:retry               zset     task id -> due time (unix s, Redis' clock):
                                                failed attempts, and tasks recovered or handed
                                                back (due now)
    ringpool:{C:p}:scheduled           zset     task id -> eta (unix s, read against Redis'
                                                clock): delayed tasks and schedule ticks, held
                                                SCHEDULED until then
    ringpool:{C:p}:dlq                 zset     task id -> when it was dead-lettered (Redis'
                                                clock)
    ringpool:{C:p}:schedules           zset     schedule name -> its next tick (unix s, Redis'
                                                clock; inf while paused)
    ringpool:{C:p}:schedule:<name>     hash     a schedule (fields below)
    ringpool:{C:p}:order:<key>         string   the handoff lease of ``ordered=True`` routing
                                                key <key> (in the partition of the key's own
                                                slot): ``<node>:<epoch>`` of the node that may
                                                start the key's ordered tasks, with a TTL
                                                (PX, Redis' clock) its holder renews

Cluster-wide:

    ringpool:{C}:partitions            string   ``P``, written once (SET NX); a process that
                                                asks for another count is refused
    ringpool:{C}:rate:<name>           hash     the cluster-wide token bucket of a rate-limited
                                                task name (tokens, at: Redis' clock); expires
                                                once full
    ringpool:{C}:done:<reply to>       channel  ids of tasks that finished away from an open
                                                stream of their sender (or were cancelled), for
                                                that sender only (``reply_to`` in the envelope)
    ringpool:{C}:retry-wake            channel  a new retry's due time: wakes the retry firer
    ringpool:{C}:delay-wake            channel  a new delayed task's eta: wakes the delay firer
    ringpool:{C}:schedule-wake         channel  a schedule added or resumed: wakes the ticker
    ringpool:{C}:cancel:<node>         channel  ids of tasks in flight on <node> just cancelled

Task record fields while a task can run, waits, or sits in the DLQ: ``state`` (a
``TaskState``), ``envelope`` (the protobuf; a task's eta is in it), ``reply_to``,
``attempt``, ``redeliver_attempt`` (the attempt a retry fires as), ``claims`` (leases
the firer took on it since it last went out), ``node`` and ``epoch`` (the owner that
accepted it), ``recoveries`` (crash recoveries), ``replays``, ``completions``,
``error_type``, ``error_message``, ``traceback``, ``dead_reason``, the running task's
latest ``progress``, ``progress_meta`` (JSON) and ``progress_at`` (the node's clock), and
the times
``created_at``, ``accepted_at``, ``started_at``, ``finished_at``, ``first_failure_at``,
``last_failure_at`` (unix seconds: Redis' clock, but ``started_at``, the node's).

A task that succeeded keeps only ``state``, ``result`` (JSON), ``name``, ``key``,
``schedule``, ``eta``, ``group`` and ``result_ttl_s`` (when it had them), ``node``, ``epoch``, ``attempt``,
``replays``, ``completions``, its times and, when an earlier attempt failed, that
failure's type, message and times (not its traceback): rebuilt small (a listpack when
its values are short), it expires after its result TTL, and its fingerprint outlives
it for the rest of the fingerprint TTL. A cancelled task's record keeps its fields,
ends CANCELLED and expires after the result TTL. The scripts in ``lua/`` write the
records; ``TaskRecord`` reads them.

Schedule fields: ``key``, ``envelope`` (the task, without an id), ``cron``, ``every_s``,
``tz``, ``origin`` (who published it), ``digest`` (of the definition), ``paused``,
``fired``, ``skipped``, ``last_tick_at``, ``last_task_id``, ``created_at``, ``updated_at``
(unix seconds, Redis' clock). ``ScheduleStore`` reads and writes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ringpool.core.naming import check_cluster_name
from ringpool.core.slots import SLOTS, key_slot, schedule_slot, slot_of
from ringpool.errors import ConfigError

DEFAULT_PARTITIONS = 64
MAX_PARTITIONS = 4096


def check_partitions(partitions: int) -> int:
    if isinstance(partitions, bool) or not isinstance(partitions, int) \
            or not 1 <= partitions <= MAX_PARTITIONS:
        raise ConfigError(f"the partition count must be in [1, {MAX_PARTITIONS}], "
                          f"got {partitions!r}")
    return partitions


@dataclass(frozen=True)
class Keys:
    """The Redis keys and channels of one cluster with ``partitions`` partitions."""

    cluster: str
    partitions: int = DEFAULT_PARTITIONS
    prefix: str = field(init=False)
    _tags: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_cluster_name(self.cluster)
        check_partitions(self.partitions)
        assert SLOTS >= MAX_PARTITIONS
        object.__setattr__(self, "prefix", f"ringpool:{{{self.cluster}}}")
        object.__setattr__(self, "_tags", tuple(
            f"ringpool:{{{self.cluster}:{p}}}" for p in range(self.partitions)))

    # -- partitions ------------------------------------------------------------------

    def partition_of(self, task_id: str) -> int:
        return slot_of(task_id) % self.partitions

    @property
    def all_partitions(self) -> range:
        return range(self.partitions)

    def tag(self, partition: int) -> str:
        """What every key of ``partition`` starts with."""
        return self._tags[partition]

    # -- one task's keys (in its partition; pass ``partition`` when it is known) ---------

    def task(self, task_id: str, partition: int | None = None) -> str:
        p = self.partition_of(task_id) if partition is None else partition
        return f"{self._tags[p]}:task:{task_id}"

    def fingerprint(self, task_id: str, name: str, idempotency_key: str,
                    partition: int | None = None) -> str:
        """The caller's idempotency key scoped by task name, else the task id itself; in
        the task's partition (its id carries the slot of its idempotency key)."""
        tag = self._tags[self.partition_of(task_id) if partition is None else partition]
        if idempotency_key:
            return f"{tag}:fp:k:{len(name)}:{name}:{idempotency_key}"
        return f"{tag}:fp:t:{task_id}"

    # -- per partition -------------------------------------------------------------------

    def inflight(self, node_id: str, partition: int) -> str:
        return f"{self.tag(partition)}:inflight:{node_id}"

    def inflight_nodes(self, partition: int) -> str:
        return f"{self.tag(partition)}:inflight-nodes"

    def retries(self, partition: int) -> str:
        return f"{self.tag(partition)}:retry"

    def scheduled(self, partition: int) -> str:
        return f"{self.tag(partition)}:scheduled"

    def dlq(self, partition: int) -> str:
        return f"{self.tag(partition)}:dlq"

    # -- schedules (each in its name's partition) --------------------------------------

    def schedule_partition(self, name: str) -> int:
        return schedule_slot(name) % self.partitions

    def schedules(self, partition: int) -> str:
        return f"{self.tag(partition)}:schedules"

    def schedule(self, name: str) -> str:
        return f"{self.tag(self.schedule_partition(name))}:schedule:{name}"

    # -- ordered keys (each in its routing key's partition) --------------------------------

    def key_partition(self, key: str) -> int:
        """The partition of routing key ``key``'s own slot."""
        return key_slot(key) % self.partitions

    def order_lease(self, key: str, partition: int | None = None) -> str:
        """The handoff lease of ordered routing key ``key``."""
        p = self.key_partition(key) if partition is None else partition
        return f"{self._tags[p]}:order:{key}"

    # -- cluster-wide ------------------------------------------------------------------

    @property
    def pattern(self) -> str:
        """A SCAN pattern that matches every key of the cluster (``{C}`` and ``{C:p}``)."""
        return f"ringpool:{{{self.cluster}[:}}]*"

    def rate_bucket(self, name: str) -> str:
        """The token bucket of rate-limited task ``name``."""
        return f"{self.prefix}:rate:{name}"

    @property
    def partition_count(self) -> str:
        return f"{self.prefix}:partitions"

    def done_channel(self, reply_to: str) -> str:
        return f"{self.prefix}:done:{reply_to}"

    @property
    def retry_channel(self) -> str:
        return f"{self.prefix}:retry-wake"

    @property
    def delay_channel(self) -> str:
        return f"{self.prefix}:delay-wake"

    @property
    def schedule_channel(self) -> str:
        return f"{self.prefix}:schedule-wake"

    def cancel_channel(self, node_id: str) -> str:
        """``cancel_channel("")`` is the prefix the cancel script adds a node id to."""
        return f"{self.prefix}:cancel:{node_id}"
