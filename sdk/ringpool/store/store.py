"""The Redis state layer: durable accept, transitions, retries, delays, cancels, recovery
and the DLQ (and, through ``schedules``, periodic schedules).

Every multi-key change is one Lua script (``lua/``), so each is atomic and one
round trip per batch. Nodes, the coordinator, the client and ``taskctl`` all go
through ``StateStore``; the key layout lives in ``keys.py`` and nowhere else.

Every time the scripts write (due times, leases, accept and finish times, when a task
was dead-lettered) is Redis' own clock (``TIME``), and so is every "now" the store
compares them with (``due_in``, ``now``): hosts whose clocks disagree still agree on
when a retry is due or a dead letter is old. Only ``started_at``, when a run began,
is the node's clock.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple, cast

import msgpack
import redis.asyncio as aioredis

from ringpool.core import progress as progress_fields
from ringpool.core.protocol import TaskState, cancel_refusal
from ringpool.errors import ClusterUnavailable
from ringpool.store import listing
from ringpool.store.events import StoreEvents
from ringpool.store.keys import Keys
from ringpool.store.listing import SCAN_BUDGET, Page, TaskQuery
from ringpool.store.pubsub import listen_forever
from ringpool.store.redis_client import connect_redis
from ringpool.store.schedules import ScheduleStore
from ringpool.store.scripts import script
from ringpool.task import TaskProgress
from ringpool.v1 import node_pb2 as pb

SOURCE_NAMES = {pb.SOURCE_CLIENT: "client", pb.SOURCE_RETRY: "retry", pb.SOURCE_REPLAY: "replay",
                pb.SOURCE_SCHEDULED: "scheduled"}
DEFAULT_FINGERPRINT_TTL_S = 24 * 3600
DEFAULT_RESULT_TTL_S = 24 * 3600
DLQ_PAGE = 500




class Waiting(StrEnum):
    """The sorted sets of tasks the leader sends to their keys' owners when due."""

    #: Failed attempts, and tasks recovered or handed back (RETRY_SCHEDULED).
    RETRY = "retry"
    #: Delayed tasks and schedule ticks (SCHEDULED), due at their eta.
    SCHEDULED = "scheduled"

    @property
    def source(self) -> pb.Source:
        """How an envelope fired from this set is marked."""
        return pb.SOURCE_RETRY if self is Waiting.RETRY else pb.SOURCE_SCHEDULED

    def key(self, keys: Keys) -> str:
        return keys.retries if self is Waiting.RETRY else keys.scheduled

    def channel(self, keys: Keys) -> str:
        """Where a new entry's due time is announced (wakes its firer)."""
        return keys.retry_channel if self is Waiting.RETRY else keys.delay_channel


class AcceptCode(StrEnum):
    """How the accept script answered for one task (its one-letter reply, ``lua/accept.lua``)."""

    #: New, or a retry, replay or fired delayed task still waiting: recorded QUEUED and in
    #: flight on this node; or new with an eta still ahead: recorded SCHEDULED.
    ACCEPTED = "A"
    #: Its fingerprint is held by an earlier task; ``task_id`` names that task.
    DUPLICATE = "D"
    #: A client task whose id another task's record already has: refused, nothing written.
    ID_TAKEN = "X"
    #: A retry, replay or fired delayed task that no longer waits in its set.
    NOT_REDELIVERABLE = "N"


@dataclass(frozen=True)
class AcceptResult:
    code: AcceptCode
    task_id: str
    state: TaskState


class TransitionOp(StrEnum):
    """The state changes of a running task (``lua/transition.lua``)."""

    #: QUEUED -> RUNNING; informational, written late if at all.
    START = "start"
    #: -> SUCCEEDED with its result; the record expires after the result TTL.
    SUCCEED = "ok"
    #: -> RETRY_SCHEDULED: into the retry set, due ``retry_in_s`` from now (Redis' clock).
    RETRY = "retry"
    #: -> FAILED: into the dead-letter queue, with its ``dead_reason``.
    DEAD = "dead"


@dataclass(frozen=True)
class Transition:
    """One state change of a running task, fenced by its owner's epoch.

    Build one with ``started``, ``succeeded``, ``retry`` or ``dead``; each records
    ``started_at``, when the run began (wall clock).
    """

    op: TransitionOp
    task_id: str
    started_at: float
    result: bytes = b""
    error_type: str = ""
    error_message: str = ""
    traceback: str = ""
    retry_in_s: float = 0.0
    dead_reason: str = ""
    publish: bool = False  # a success is announced on the done channel (no stream to push to)
    result_ttl_s: int = 0  # a success's own result TTL; 0: the store's

    @classmethod
    def started(cls, task_id: str, started_at: float) -> Transition:
        return cls(TransitionOp.START, task_id, started_at)

    @classmethod
    def succeeded(
        cls, task_id: str, result: bytes, started_at: float, publish: bool = False,
        result_ttl_s: int = 0,
    ) -> Transition:
        return cls(TransitionOp.SUCCEED, task_id, started_at, result=result, publish=publish,
                   result_ttl_s=result_ttl_s)

    @classmethod
    def retry(
        cls, task_id: str, started_at: float, retry_in_s: float, error_type: str,
        error_message: str, traceback: str,
    ) -> Transition:
        return cls(TransitionOp.RETRY, task_id, started_at, error_type=error_type,
                   error_message=error_message, traceback=traceback, retry_in_s=retry_in_s)

    @classmethod
    def dead(
        cls, task_id: str, started_at: float, dead_reason: str, error_type: str,
        error_message: str, traceback: str,
    ) -> Transition:
        return cls(TransitionOp.DEAD, task_id, started_at, error_type=error_type,
                   error_message=error_message, traceback=traceback, dead_reason=dead_reason)

    def packed(self) -> tuple[Any, ...]:
        """The op as ``lua/transition.lua`` reads it."""
        return (self.op.value, self.task_id, self.started_at, self.result, self.error_type,
                self.error_message, self.traceback, self.retry_in_s, self.dead_reason,
                int(self.publish), self.result_ttl_s)


class TokenAsk(NamedTuple):
    """Starts of one rate-limited task name that wait, and its bucket's shape."""

    wanted: int
    rate_per_s: float
    burst: float


class TokenGrant(NamedTuple):
    granted: int
    wait_s: float  # until asking again is worth it (0: all granted)


@dataclass(frozen=True)
class DueTask:
    task_id: str
    envelope: pb.TaskEnvelope
    attempt: int
    claims: int  # leases taken on it since it last went out (this one included)


@dataclass(frozen=True)
class Claimed:
    """One claim of due retries, and how late the oldest of them was (Redis' clock)."""

    tasks: list[DueTask]
    late_s: float


@dataclass(frozen=True)
class Recovery:
    recovered: int
    poisoned: int
    left: int


def _pack(items: list[Any]) -> bytes:
    # Redis' Lua cmsgpack predates msgpack's bin type: send bytes as raw strings.
    return msgpack.packb(items, use_bin_type=False)  # type: ignore[no-any-return]


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else value


def _float(value: bytes | str | None) -> float | None:
    return float(value) if value not in (None, b"", "") else None  # type: ignore[arg-type]


@dataclass
class TaskRecord:
    """A task as Redis holds it: the truth for status, results and the DLQ."""

    task_id: str
    state: TaskState
    name: str = ""
    key: str = ""
    node: str = ""
    attempt: int = 0
    recoveries: int = 0
    replays: int = 0
    completions: int = 0  # final transitions applied: the fence keeps this at most 1
    result: bytes | None = None
    error_type: str = ""
    error_message: str = ""
    traceback: str = ""
    dead_reason: str = ""
    created_at: float | None = None
    accepted_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    first_failure_at: float | None = None
    last_failure_at: float | None = None
    progress: TaskProgress | None = None  # the latest the running task reported
    expires_at: float | None = None  # when a finished task's record goes (if read)
    envelope: pb.TaskEnvelope = field(default_factory=pb.TaskEnvelope)

    @property
    def eta(self) -> float | None:
        """When a delayed task or a schedule's tick was due; None for one sent to run at once."""
        return self.envelope.eta or None

    @property
    def schedule(self) -> str:
        """The schedule whose tick made this task ('' for none)."""
        return self.envelope.schedule

    @classmethod
    def from_hash(cls, task_id: str, raw: Mapping[Any, Any]) -> TaskRecord:
        get = raw.get
        envelope = pb.TaskEnvelope()
        if get(b"envelope"):
            envelope.ParseFromString(raw[b"envelope"])
        return cls(
            task_id=task_id,
            state=TaskState.parse(_text(get(b"state"))),
            name=envelope.name,
            key=envelope.key,
            node=_text(get(b"node")),
            attempt=int(get(b"attempt") or 0),
            recoveries=int(get(b"recoveries") or 0),
            replays=int(get(b"replays") or 0),
            completions=int(get(b"completions") or 0),
            result=get(b"result"),
            error_type=_text(get(b"error_type")),
            error_message=_text(get(b"error_message")),
            traceback=_text(get(b"traceback")),
            dead_reason=_text(get(b"dead_reason")),
            created_at=_float(get(b"created_at")),
            accepted_at=_float(get(b"accepted_at")),
            started_at=_float(get(b"started_at")),
            finished_at=_float(get(b"finished_at")),
            first_failure_at=_float(get(b"first_failure_at")),
            last_failure_at=_float(get(b"last_failure_at")),
            progress=progress_fields.from_record(
                get(b"progress"), get(b"progress_meta"), get(b"progress_at")),
            envelope=envelope,
        )

    def summary(self) -> listing.TaskRecordSummary:
        """What a listing shows of this record."""
        return listing.TaskRecordSummary(
            task_id=self.task_id, state=self.state, name=self.name, key=self.key,
            node=self.node, attempt=self.attempt, replays=self.replays,
            error_type=self.error_type, error_message=self.error_message,
            accepted_at=self.accepted_at, started_at=self.started_at,
            finished_at=self.finished_at,
            progress=self.progress.value if self.progress is not None else None)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (the envelope's payload decoded as text)."""
        data = {k: v for k, v in self.__dict__.items()
                if k not in ("envelope", "result", "progress")}
        data["result"] = self.result.decode(errors="replace") if self.result is not None else None
        progress = self.progress
        data["progress"] = None if progress is None else {
            "value": progress.value, "meta": progress.meta, "at": progress.at}
        data["group"] = self.envelope.group
        data["result_ttl_s"] = self.envelope.result_ttl_s or None
        data["args"] = self.envelope.payload.decode(errors="replace")
        data["headers"] = dict(self.envelope.headers)
        data["idempotency_key"] = self.envelope.idempotency_key
        data["eta"] = self.eta
        data["schedule"] = self.schedule
        return data


class QueueSizes(NamedTuple):
    retries: int  # tasks waiting in the retry set, due or not
    dlq: int  # tasks in the dead-letter queue
    scheduled: int  # delayed tasks and schedule ticks waiting for their eta


class StateStore:
    """All reads and writes of shared task state for one cluster."""

    def __init__(
        self,
        client: aioredis.Redis,
        cluster: str,
        fingerprint_ttl_s: int = DEFAULT_FINGERPRINT_TTL_S,
        result_ttl_s: int = DEFAULT_RESULT_TTL_S,
        events: StoreEvents | None = None,
    ) -> None:
        self._redis = client
        self.events = events or StoreEvents()
        self.keys = Keys(cluster)
        self.fingerprint_ttl_s = fingerprint_ttl_s
        self.result_ttl_s = result_ttl_s
        self.schedules = ScheduleStore(client, self.keys, self.now)
        self._accept = script(client, "accept")
        self._transition = script(client, "transition")
        self._recover = script(client, "recover")
        self._claim = script(client, "claim")
        self._purge = script(client, "purge")
        self._bury = script(client, "bury")
        self._cancel = script(client, "cancel")
        self._progress = script(client, "progress")
        self._tokens = script(client, "tokens")
        # The listing scripts start with the summary code they share.
        self._zlist = script(client, "summary", "zlist")
        self._hlist = script(client, "summary", "hlist")

    @classmethod
    def from_url(cls, url: str, cluster: str, **kwargs: Any) -> StateStore:
        return cls(connect_redis(url), cluster, **kwargs)

    async def close(self) -> None:
        await self._redis.aclose()

    async def ping(self) -> float:
        """Round trip to Redis in seconds."""
        started = time.perf_counter()
        await self._redis.ping()
        return time.perf_counter() - started

    # -- the node's writes -------------------------------------------------------

    async def accept(
        self, node_id: str, epoch: int, envelopes: Sequence[pb.TaskEnvelope]
    ) -> list[AcceptResult]:
        if not envelopes:
            return []
        keys = self.keys
        tasks = _pack([
            (env.task_id, SOURCE_NAMES[env.source], env.SerializeToString(), env.attempt,
             keys.fingerprint(env.name, env.idempotency_key, env.task_id), env.eta)
            for env in envelopes
        ])
        started = time.perf_counter()
        raw = await self._accept(
            keys=[keys.inflight(node_id), keys.retries, keys.dlq, keys.inflight_nodes,
                  keys.scheduled],
            args=[node_id, epoch, self.fingerprint_ttl_s, keys.task_prefix, tasks,
                  keys.delay_channel],
        )
        self.events.round_trip("accept", time.perf_counter() - started)
        return [
            AcceptResult(AcceptCode(code), task_id, TaskState.parse(state))
            for code, task_id, state in msgpack.unpackb(raw)
        ]

    async def transition(self, node_id: str, epoch: int, ops: Sequence[Transition]) -> list[bool]:
        """Apply ``ops``; False for each op refused because the node no longer owns the task."""
        if not ops:
            return []
        keys = self.keys
        started = time.perf_counter()
        raw = await self._transition(
            keys=[keys.inflight(node_id), keys.retries, keys.dlq],
            args=[epoch, self.result_ttl_s, keys.task_prefix, keys.done_channel,
                  keys.retry_channel, _pack([op.packed() for op in ops])],
        )
        self.events.round_trip("transition", time.perf_counter() - started)
        return [code == ord("K") for code in raw]

    async def record_progress(
        self, node_id: str, epoch: int, reports: Sequence[tuple[str, TaskProgress]]
    ) -> int:
        """Write the latest progress of tasks ``node_id`` runs under ``epoch`` (one call);
        how many were still its to write."""
        if not reports:
            return 0
        keys = self.keys
        started = time.perf_counter()
        written = await self._progress(
            keys=[keys.inflight(node_id), *(keys.task(task_id) for task_id, _ in reports)],
            args=[epoch, _pack([(task_id, *progress_fields.record_fields(report))
                                for task_id, report in reports])],
        )
        self.events.round_trip("progress", time.perf_counter() - started)
        return int(written)

    async def take_tokens(self, asks: Mapping[str, TokenAsk]) -> dict[str, TokenGrant]:
        """Take tokens from the cluster-wide buckets of these task names, in one call."""
        if not asks:
            return {}
        names = list(asks)
        started = time.perf_counter()
        raw = await self._tokens(
            keys=[self.keys.rate_bucket(name) for name in names],
            args=[_pack([(asks[n].wanted, repr(asks[n].rate_per_s), repr(asks[n].burst))
                         for n in names])],
        )
        self.events.round_trip("tokens", time.perf_counter() - started)
        return {name: TokenGrant(int(granted), float(wait))
                for name, (granted, wait) in zip(names, msgpack.unpackb(raw), strict=True)}

    async def publish_done(self, task_id: str) -> None:
        """Announce that ``task_id`` has its outcome, for a submitter waiting on Redis."""
        await self._redis.publish(self.keys.done_channel, task_id)

    async def recover(
        self, node_id: str, max_epoch: int | None, max_recoveries: int, limit: int = 1000
    ) -> Recovery:
        """Move ``node_id``'s in-flight tasks of owner epochs up to ``max_epoch`` (None: all)
        to the retry set, due now. ``max_recoveries`` > 0 counts this as a crash recovery
        of each task and dead-letters one recovered more often than that (poison); 0 does
        not count it."""
        keys = self.keys
        total = Recovery(0, 0, 0)
        while True:
            recovered, poisoned, left = await self._recover(
                keys=[keys.inflight(node_id), keys.retries, keys.dlq],
                args=["" if max_epoch is None else max_epoch, max_recoveries,
                      keys.task_prefix, keys.done_channel, keys.retry_channel, limit],
            )
            total = Recovery(total.recovered + recovered, total.poisoned + poisoned, left)
            if not left:
                return total

    async def hand_back(self, node_id: str, task_ids: Iterable[str], max_epoch: int) -> int:
        """Move these in-flight tasks of ``node_id`` (of owner epochs up to ``max_epoch``) to
        the retry set, due now; no attempt used, no recovery counted."""
        keys = self.keys
        recovered, _, _ = await self._recover(
            keys=[keys.inflight(node_id), keys.retries, keys.dlq],
            args=[max_epoch, 0, keys.task_prefix, keys.done_channel,
                  keys.retry_channel, 1_000_000, _pack(list(task_ids))],
        )
        return int(recovered)

    async def inflight(self, node_id: str) -> dict[str, int]:
        """Task id -> owner epoch of the tasks Redis holds in flight on ``node_id``."""
        raw = await self._redis.hgetall(self.keys.inflight(node_id))
        return {_text(k): int(v) for k, v in raw.items()}

    async def inflight_nodes(self) -> set[str]:
        """Every node that ever held tasks in flight (the recovery's candidates)."""
        return {_text(n) for n in await self._redis.smembers(self.keys.inflight_nodes)}

    # -- cancelling ------------------------------------------------------------------

    async def cancel(self, task_id: str) -> TaskState:
        """Cancel a task that has not finished; the state it was in. A waiting task never
        runs; a queued or running one is fenced off and its node told to stop it.

        Raises TaskAlreadyFinished for a task with its outcome, TaskNotFound for no record.
        """
        keys = self.keys
        node = ""
        for _ in range(5):  # the owner read can go stale only while the task moves on
            code, detail = await self._cancel(
                keys=[keys.task(task_id), keys.retries, keys.scheduled, keys.inflight(node)],
                args=[task_id, node, self.result_ttl_s, keys.done_channel,
                      keys.cancel_channel_prefix])
            code, detail = _text(code), _text(detail)
            if code == "C":
                return TaskState.parse(detail)
            if code != "M":
                state = TaskState.UNKNOWN if code == "N" else TaskState.parse(detail)
                refused = cancel_refusal(task_id, state)
                assert refused is not None
                raise refused
            node = detail
        raise ClusterUnavailable(f"task {task_id} kept moving between nodes; try again")

    async def watch_cancels(self, node_id: str, on_cancel: Callable[[str], Awaitable[None]],
                            on_subscribed: Callable[[], Awaitable[None]] | None = None) -> None:
        """Call ``on_cancel(task_id)`` for each task in flight on ``node_id`` that was just
        cancelled; ends when cancelled."""
        async def decoded(data: bytes) -> None:
            await on_cancel(_text(data))

        await listen_forever(self._redis, self.keys.cancel_channel(node_id), decoded,
                             on_subscribed)

    # -- retries and delayed tasks -------------------------------------------------

    async def claim_due(self, lease_s: float, limit: int = 500,
                        waiting: Waiting = Waiting.RETRY) -> Claimed:
        """Lease up to ``limit`` due tasks of ``waiting`` for ``lease_s`` seconds (Redis'
        clock; see ``lua/claim.lua``)."""
        raw = await self._claim(
            keys=[waiting.key(self.keys)], args=[lease_s, limit, self.keys.task_prefix]
        )
        due = []
        for i in range(0, len(raw) - 1, 4):
            envelope = pb.TaskEnvelope()
            envelope.ParseFromString(raw[i + 1])
            due.append(DueTask(_text(raw[i]), envelope, int(raw[i + 2]), int(raw[i + 3])))
        return Claimed(due, float(raw[-1]))

    async def bury(
        self, task_id: str, error_type: str, message: str, dead_reason: str = "permanent",
        waiting: Waiting = Waiting.RETRY,
    ) -> bool:
        """Move a task waiting in ``waiting`` straight to the DLQ (its dispatch was refused)."""
        keys = self.keys
        return bool(await self._bury(
            keys=[waiting.key(keys), keys.dlq, keys.task(task_id)],
            args=[task_id, error_type, message, dead_reason, keys.done_channel],
        ))

    async def due_in(self, waiting: Waiting = Waiting.RETRY) -> float | None:
        """Seconds until the earliest task of ``waiting`` is due by Redis' clock (<= 0: due
        now); None when the set is empty."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zrange(waiting.key(self.keys), 0, 0, withscores=True)
            pipe.time()
            first, (seconds, micros) = await pipe.execute()
        return float(first[0][1]) - (seconds + micros / 1e6) if first else None

    async def now(self) -> float:
        """Redis' clock, in unix seconds: the one clock of every time the store keeps."""
        seconds, micros = await self._redis.time()
        return float(seconds + micros / 1e6)

    async def queue_sizes(self) -> QueueSizes:
        """How many tasks wait in the retry set, the DLQ and the scheduled set (one round
        trip)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zcard(self.keys.retries)
            pipe.zcard(self.keys.dlq)
            pipe.zcard(self.keys.scheduled)
            retries, dlq, scheduled = await pipe.execute()
        return QueueSizes(int(retries), int(dlq), int(scheduled))

    # -- watching ------------------------------------------------------------------

    async def watch_done(
        self, on_done: Callable[[str], Awaitable[None]],
        on_subscribed: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Call ``on_done(task_id)`` for each task announced as done; ends when cancelled.

        ``on_subscribed`` runs after every (re)subscription, to catch up on what was
        announced while nobody listened.
        """
        async def decoded(data: bytes) -> None:
            await on_done(_text(data))

        await listen_forever(self._redis, self.keys.done_channel, decoded, on_subscribed)

    async def watch_wakes(self, waiting: Waiting, on_wake: Callable[[], Awaitable[None]]) -> None:
        """Call ``on_wake()`` when a task joins ``waiting``, and after every (re)subscription
        (a wake sent while nobody listened is lost); ends when cancelled."""
        async def woken(_: bytes) -> None:
            await on_wake()

        await listen_forever(self._redis, waiting.channel(self.keys), woken, on_wake)

    # -- records -------------------------------------------------------------------

    async def record(self, task_id: str) -> TaskRecord | None:
        """The task's record, with when it expires (a finished task's), in one round trip."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.keys.task(task_id))
            pipe.pttl(self.keys.task(task_id))
            raw, ttl_ms = await pipe.execute()
        if not raw:
            return None
        record = TaskRecord.from_hash(task_id, raw)
        if ttl_ms > 0:
            record.expires_at = time.time() + ttl_ms / 1000
        return record

    async def progress(self, task_id: str) -> TaskProgress | None:
        """The latest progress the task's record holds."""
        value, meta, at = await self._redis.hmget(
            self.keys.task(task_id), "progress", "progress_meta", "progress_at")
        return progress_fields.from_record(value, meta, at)

    async def records(self, task_ids: Iterable[str]) -> list[TaskRecord | None]:
        ids = list(task_ids)
        async with self._redis.pipeline(transaction=False) as pipe:
            for task_id in ids:
                pipe.hgetall(self.keys.task(task_id))
            raws = await pipe.execute()
        return [
            TaskRecord.from_hash(task_id, raw) if raw else None
            for task_id, raw in zip(ids, raws, strict=True)
        ]

    async def inflight_count(self) -> int:
        """Tasks Redis holds in flight (queued or running) on any node."""
        nodes = sorted(await self.inflight_nodes())
        async with self._redis.pipeline(transaction=False) as pipe:
            for node_id in nodes:
                pipe.hlen(self.keys.inflight(node_id))
            return sum(int(n) for n in await pipe.execute())

    async def states(self, task_ids: Sequence[str]) -> list[TaskState]:
        """Each task's state; UNKNOWN for a task without a record."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for task_id in task_ids:
                pipe.hget(self.keys.task(task_id), "state")
            return [TaskState.parse(_text(s)) for s in await pipe.execute()]

    # -- the dead-letter queue -----------------------------------------------------

    async def dlq_size(self) -> int:
        return int(await self._redis.zcard(self.keys.dlq))

    async def dlq_pages(
        self, since: float | None = None, until: float | None = None, page_size: int = DLQ_PAGE
    ) -> AsyncIterator[list[tuple[str, float]]]:
        """Every DLQ entry dead-lettered between ``since`` and ``until`` (both inclusive) as
        (task id, dead-lettered at), oldest first, one bounded read per page.

        A page ends with every entry of its last timestamp and the next starts after it,
        so entries that leave or join meanwhile never make another one skip or repeat.
        """
        low, high = _bound(since, "-inf"), _bound(until, "+inf")
        while True:
            page = await self._dlq_range(low, high, page_size)
            if not page:
                return
            last = page[-1][1]
            if len(page) == page_size:  # more may share the last timestamp
                page = [p for p in page if p[1] < last]
                page += await self._dlq_range(repr(last), repr(last), None)
            if page:
                yield page
            low = f"({last!r}"

    async def _dlq_range(
        self, low: str, high: str, limit: int | None
    ) -> list[tuple[str, float]]:
        raw = await self._redis.zrangebyscore(
            self.keys.dlq, low, high, start=0 if limit is not None else None, num=limit,
            withscores=True,
        )
        pairs = cast(list[tuple[bytes, float]], raw)
        return [(_text(task_id), float(score)) for task_id, score in pairs]

    async def dlq_list(
        self, query: TaskQuery | None = None, cursor: str | None = None, limit: int = 50,
        newest_first: bool = True, budget: int = SCAN_BUDGET,
    ) -> Page:
        """A page of DLQ entries that match ``query``, by dead-letter time (see ``listing``)."""
        return await self._zset_page(self.keys.dlq, query or TaskQuery(), cursor, limit,
                                     newest_first, budget)

    async def dlq_count(self, since: float | None = None, until: float | None = None) -> int:
        """DLQ entries dead-lettered in a time range (both ends inclusive)."""
        return int(await self._redis.zcount(
            self.keys.dlq, _bound(since, "-inf"), _bound(until, "+inf")))

    async def retries_list(
        self, query: TaskQuery | None = None, cursor: str | None = None, limit: int = 50,
        budget: int = SCAN_BUDGET,
    ) -> Page:
        """A page of tasks waiting for a retry that match ``query``, soonest due first."""
        return await self._zset_page(self.keys.retries, query or TaskQuery(), cursor, limit,
                                     False, budget)

    async def scheduled_list(
        self, query: TaskQuery | None = None, cursor: str | None = None, limit: int = 50,
        budget: int = SCAN_BUDGET,
    ) -> Page:
        """A page of delayed tasks and schedule ticks (SCHEDULED) that match ``query``,
        soonest eta first (the time range is over the eta)."""
        return await self._zset_page(self.keys.scheduled, query or TaskQuery(), cursor, limit,
                                     False, budget)

    async def _zset_page(
        self, key: str, query: TaskQuery, cursor: str | None, limit: int, descending: bool,
        budget: int,
    ) -> Page:
        after, after_score = listing.parse_zset_cursor(cursor)
        listing.check_limit(limit)
        last, last_score, scanned, rows = await self._zlist(keys=[key], args=[
            self.keys.task_prefix, "desc" if descending else "asc", listing.bound(query.since),
            listing.bound(query.until), after, after_score, "", *query.patterns(), limit,
            max(1, budget)])
        return Page(listing.parse_rows(rows), listing.zset_cursor(last, last_score), int(scanned))

    async def inflight_list(
        self, query: TaskQuery | None = None, state: TaskState | None = None,
        cursor: str | None = None, limit: int = 50, budget: int = SCAN_BUDGET,
    ) -> Page:
        """A page of tasks in flight on any node (queued or running, or only ``state``),
        node by node; ``query``'s time range does not apply."""
        if state not in (None, TaskState.QUEUED, TaskState.RUNNING):
            raise listing.InvalidQuery(f"tasks in flight are QUEUED or RUNNING, not {state}")
        node_id, scan_cursor = listing.parse_inflight_cursor(cursor)
        listing.check_limit(limit)
        query = query or TaskQuery()
        patterns = query.patterns()
        nodes = [n for n in sorted(await self.inflight_nodes()) if n >= node_id]
        if query.node and listing.is_literal(query.node):  # one node's hash is all to read
            nodes = [n for n in nodes if n == listing.unescape(query.node)]
        items: list[listing.Listed] = []
        scanned = 0
        for node in nodes:
            if node != node_id:
                scan_cursor = "0"
            scan_cursor, read, rows = await self._hlist(keys=[self.keys.inflight(node)], args=[
                self.keys.task_prefix, scan_cursor, state.value if state else "",
                *patterns, limit - len(items), max(1, budget - scanned)])
            scan_cursor = _text(scan_cursor)
            scanned += int(read)
            items += listing.parse_rows(rows)
            if scan_cursor != "0":
                return Page(items, listing.inflight_cursor(node, scan_cursor), scanned)
            if len(items) >= limit or scanned >= budget:
                later = nodes[nodes.index(node) + 1:]
                return Page(items, listing.inflight_cursor(later[0], "0") if later else None,
                            scanned)
        return Page(items, None, scanned)

    async def dlq_times(self, task_ids: Sequence[str]) -> list[float | None]:
        """When each task was dead-lettered; None for one not in the DLQ."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for task_id in task_ids:
                pipe.zscore(self.keys.dlq, task_id)
            scores = await pipe.execute()
        return [float(s) if s is not None else None for s in scores]

    async def dlq_purge(self, task_ids: Sequence[str]) -> int:
        """Remove these DLQ entries and their records; ids not in the DLQ are left alone."""
        if not task_ids:
            return 0
        return int(
            await self._purge(keys=[self.keys.dlq], args=[self.keys.task_prefix, *task_ids])
        )


def _bound(value: float | None, unbounded: str) -> str:
    return unbounded if value is None else repr(value)
