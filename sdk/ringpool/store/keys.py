"""The Redis key layout of one cluster: every key and channel ringpool uses, and nowhere else.

Every key carries the hash tag ``{<cluster>}``, so a Redis Cluster keeps one
cluster's keys in one slot and each script may touch all of them in one call.
``C`` is the cluster name:

    ringpool:{C}:task:<id>           hash     the task record (fields below); expires the
                                              result TTL after it succeeded
    ringpool:{C}:fp:t:<id>           string   fingerprint of a task without an idempotency key,
    ringpool:{C}:fp:k:<n>:<name>:<ikey>       or with one (string; ``<n>`` is the name's length,
                                              so no two (name, key) pairs share one): the task
                                              id that holds it (TTL)
    ringpool:{C}:inflight:<node>     hash     task id -> owner epoch: accepted by <node>, not
                                              finished (the fence of every transition)
    ringpool:{C}:inflight-nodes      set      nodes that ever held in-flight tasks (recovery)
    ringpool:{C}:retry               zset     task id -> due time (unix s, Redis' clock):
                                              failed attempts, and tasks recovered or handed
                                              back (due now)
    ringpool:{C}:scheduled           zset     task id -> eta (unix s, read against Redis'
                                              clock): delayed tasks and schedule ticks, held
                                              SCHEDULED until then
    ringpool:{C}:dlq                 zset     task id -> when it was dead-lettered (Redis' clock)
    ringpool:{C}:schedules           zset     schedule name -> its next tick (unix s, Redis'
                                              clock; inf while paused)
    ringpool:{C}:schedule:<name>     hash     a schedule (fields below)
    ringpool:{C}:rate:<name>         hash     the cluster-wide token bucket of a rate-limited
                                              task name (tokens, at: Redis' clock); expires
                                              once full
    ringpool:{C}:done                channel  ids of tasks that finished away from an open
                                              stream of their submitter (or were cancelled)
    ringpool:{C}:retry-wake          channel  a new retry's due time: wakes the retry firer
    ringpool:{C}:delay-wake          channel  a new delayed task's eta: wakes the delay firer
    ringpool:{C}:schedule-wake       channel  a schedule added or resumed: wakes the ticker
    ringpool:{C}:cancel:<node>       channel  ids of tasks in flight on <node> just cancelled

Task record fields: ``state`` (a ``TaskState``), ``envelope`` (the protobuf), ``attempt``,
``redeliver_attempt`` (the attempt a retry fires as), ``claims`` (leases the retry firer
took on it since it last went out), ``node`` and ``epoch`` (the owner that accepted it),
``recoveries`` (crash recoveries), ``replays``, ``completions``, ``result`` (JSON) or
``error_type``, ``error_message``, ``traceback``, ``dead_reason``, the running task's
latest ``progress``, ``progress_meta`` (JSON) and ``progress_at`` (the node's clock), and
the times
``created_at``, ``accepted_at``, ``started_at``, ``finished_at``, ``first_failure_at``,
``last_failure_at`` (unix seconds: Redis' clock, but ``started_at``, the node's). The
scripts in ``lua/`` write them; ``TaskRecord`` reads them. A task's eta is in its envelope.

Schedule fields: ``key``, ``envelope`` (the task, without an id), ``cron``, ``every_s``,
``tz``, ``origin`` (who published it), ``digest`` (of the definition), ``paused``,
``fired``, ``skipped``, ``last_tick_at``, ``last_task_id``, ``created_at``, ``updated_at``
(unix seconds, Redis' clock). ``ScheduleStore`` reads and writes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ringpool.core.naming import check_cluster_name


@dataclass(frozen=True)
class Keys:
    """The Redis keys and channels of one cluster."""

    cluster: str
    prefix: str = field(init=False)

    def __post_init__(self) -> None:
        check_cluster_name(self.cluster)
        object.__setattr__(self, "prefix", f"ringpool:{{{self.cluster}}}")

    @property
    def task_prefix(self) -> str:
        """``task(id)`` is this plus the id (the scripts build record keys this way)."""
        return f"{self.prefix}:task:"

    def task(self, task_id: str) -> str:
        return f"{self.task_prefix}{task_id}"

    def fingerprint(self, name: str, idempotency_key: str, task_id: str) -> str:
        """The caller's idempotency key scoped by task name, else the task id itself.

        The name's length goes first, so that every (name, key) pair has its own
        fingerprint: ``a`` + ``b:c`` and ``a:b`` + ``c`` no longer meet.
        """
        if idempotency_key:
            return f"{self.prefix}:fp:k:{len(name)}:{name}:{idempotency_key}"
        return f"{self.prefix}:fp:t:{task_id}"

    def inflight(self, node_id: str) -> str:
        return f"{self.prefix}:inflight:{node_id}"

    @property
    def inflight_nodes(self) -> str:
        return f"{self.prefix}:inflight-nodes"

    @property
    def retries(self) -> str:
        return f"{self.prefix}:retry"

    @property
    def scheduled(self) -> str:
        return f"{self.prefix}:scheduled"

    @property
    def dlq(self) -> str:
        return f"{self.prefix}:dlq"

    def rate_bucket(self, name: str) -> str:
        """The token bucket of rate-limited task ``name``."""
        return f"{self.prefix}:rate:{name}"

    @property
    def schedules(self) -> str:
        return f"{self.prefix}:schedules"

    def schedule(self, name: str) -> str:
        return f"{self.prefix}:schedule:{name}"

    @property
    def done_channel(self) -> str:
        return f"{self.prefix}:done"

    @property
    def retry_channel(self) -> str:
        return f"{self.prefix}:retry-wake"

    @property
    def delay_channel(self) -> str:
        return f"{self.prefix}:delay-wake"

    @property
    def schedule_channel(self) -> str:
        return f"{self.prefix}:schedule-wake"

    @property
    def cancel_channel_prefix(self) -> str:
        """``cancel_channel(node)`` is this plus the node id (the cancel script builds it)."""
        return f"{self.prefix}:cancel:"

    def cancel_channel(self, node_id: str) -> str:
        return f"{self.cancel_channel_prefix}{node_id}"
