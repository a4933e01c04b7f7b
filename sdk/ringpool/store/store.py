"""The Redis state layer: durable accept, transitions, retries, delays, cancels, recovery
and the DLQ (and, through ``schedules``, periodic schedules).

Every multi-key change is one Lua script (``lua/``), so each is atomic: on a Redis
Cluster a call stays in one partition (one slot), and a batch that spans partitions is
one call per partition, all sent in one pipeline (one round trip per shard); on one
Redis a call covers every partition of its batch. Nodes, the coordinator, the client
and ``taskctl`` all go through ``StateStore``; the key layout lives in ``keys.py`` and
nowhere else. Reads that cover the whole cluster (sizes, the DLQ, in-flight tasks, the
next due time) walk every partition, also in pipelines.

Every time the scripts write (due times, leases, accept and finish times, when a task
was dead-lettered) is Redis' own clock (``TIME``), and so is every "now" the store
compares them with (``due_in``, ``now``): hosts whose clocks disagree still agree on
when a retry is due or a dead letter is old. Only ``started_at``, when a run began,
is the node's clock.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

import msgpack

from ringpool.core import progress as progress_fields
from ringpool.core.protocol import TaskState, cancel_refusal
from ringpool.errors import ClusterUnavailable, ConfigError
from ringpool.store import listing
from ringpool.store.connection import RedisClient, RedisConnection, RedisOptions
from ringpool.store.durability import (
    DEFAULT_DURABILITY,
    AcceptDurability,
    ServerFacts,
    confirmed,
    log_facts,
    probe,
)
from ringpool.store.events import StoreEvents
from ringpool.store.keys import DEFAULT_PARTITIONS, Keys, check_partitions
from ringpool.store.listing import SCAN_BUDGET, Entry, Page, TaskQuery
from ringpool.store.pubsub import listen_forever
from ringpool.store.records import TaskRecord, text
from ringpool.store.schedules import ScheduleStore
from ringpool.store.scripts import Call, Script, call, run
from ringpool.task import TaskProgress
from ringpool.v1 import node_pb2 as pb

log = logging.getLogger(__name__)

SOURCE_NAMES = {pb.SOURCE_CLIENT: "client", pb.SOURCE_RETRY: "retry", pb.SOURCE_REPLAY: "replay",
                pb.SOURCE_SCHEDULED: "scheduled"}
DEFAULT_FINGERPRINT_TTL_S = 24 * 3600
DEFAULT_RESULT_TTL_S = 24 * 3600
DLQ_PAGE = 500
SCAN_BATCH = 1000  # in-flight entries one HSCAN step of a recovery reads

ACCEPT = Script.load("accept")
PROGRESS = Script.load("progress")
TOKENS = Script.load("tokens")
TRANSITION = Script.load("transition", "envelope")
RECOVER = Script.load("recover")
CLAIM = Script.load("claim")
BURY = Script.load("bury")
CANCEL = Script.load("cancel")
PURGE = Script.load("purge")
ZAFTER = Script.load("zafter")
SUMMARIES = Script.load("summaries", "envelope")
ORDER = Script.load("order")


def connect_redis(
    url: str, connect_timeout_s: float = 5.0, timeout_s: float = 10.0, retries: int = 20,
    backoff_cap_s: float = 1.0,
) -> RedisConnection:
    """The Redis of ``url`` (a server, a Redis Cluster, or Sentinel's master), opened on
    first use; its client rides out restarts: reconnects with backoff, up to ``retries``
    times per command."""
    return RedisConnection(url, RedisOptions(connect_timeout_s, timeout_s, retries, backoff_cap_s))


class Waiting(StrEnum):
    """The sorted sets (one per partition) of tasks the leader sends to their keys' owners
    when due."""

    #: Failed attempts, and tasks recovered or handed back (RETRY_SCHEDULED).
    RETRY = "retry"
    #: Delayed tasks and schedule ticks (SCHEDULED), due at their eta.
    SCHEDULED = "scheduled"

    @property
    def source(self) -> pb.Source:
        """How an envelope fired from this set is marked."""
        return pb.SOURCE_RETRY if self is Waiting.RETRY else pb.SOURCE_SCHEDULED

    def key(self, keys: Keys, partition: int) -> str:
        return keys.retries(partition) if self is Waiting.RETRY else keys.scheduled(partition)

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
    #: Its partition's Redis failed or did not confirm the accept durability: not
    #: acknowledged (``message`` says why); a resend is safe.
    UNAVAILABLE = "U"


@dataclass(frozen=True)
class AcceptResult:
    code: AcceptCode
    task_id: str
    state: TaskState
    message: str = ""


class TransitionOp(StrEnum):
    """The state changes of a running task (``lua/transition.lua``)."""

    #: QUEUED -> RUNNING; informational, written late if at all.
    START = "start"
    #: -> SUCCEEDED with its result; the record slims down and expires after the result TTL.
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
    publish: bool = False  # a success is announced to its sender (no stream to push to)
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


class LeaseAnswer(NamedTuple):
    """How a take of an ordered key's handoff lease was answered."""

    granted: bool
    holder: str = ""  # who holds it instead (when not granted)
    remaining_s: float = 0.0  # how long it holds it still, by Redis' clock


@dataclass(frozen=True)
class DueTask:
    task_id: str
    envelope: pb.TaskEnvelope
    attempt: int
    claims: int  # leases taken on it since it last went out (this one included)


@dataclass(frozen=True)
class Claimed:
    """One claim of due tasks, and how late the oldest of them was (Redis' clock)."""

    tasks: list[DueTask]
    late_s: float


@dataclass(frozen=True)
class Recovery:
    recovered: int
    poisoned: int
    left: int


class QueueSizes(NamedTuple):
    retries: int  # tasks waiting in the retry set, due or not
    dlq: int  # tasks in the dead-letter queue
    scheduled: int  # delayed tasks and schedule ticks waiting for their eta


def _pack(items: list[Any]) -> bytes:
    # Redis' Lua cmsgpack predates msgpack's bin type: send bytes as raw strings.
    return msgpack.packb(items, use_bin_type=False)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class _Group:
    """The items of a batch that one script call takes."""

    partitions: list[int]  # the partitions the call covers, in the order of its KEYS
    indexes: list[int]  # the batch's items it takes, in batch order
    places: list[int]  # each item's partition's place in ``partitions``, from 1 (for Lua)
    of_item: list[int]  # each item's partition

    def items(self) -> Iterator[tuple[int, int, int]]:
        """(index in the batch, partition, place) of each item."""
        return zip(self.indexes, self.of_item, self.places, strict=True)


def _groups(keys: Keys, task_ids: Sequence[str], together: bool) -> list[_Group]:
    """One group per partition (a Redis Cluster: a call stays in one slot), or one group
    for the whole batch (one Redis: fewer, larger calls cost Redis less)."""
    return _groups_of([keys.partition_of(t) for t in task_ids], together)


def _groups_of(of_item: list[int], together: bool) -> list[_Group]:
    """``_groups`` of items whose partitions are ``of_item``."""
    by_partition: dict[int, list[int]] = {}
    for index, p in enumerate(of_item):
        by_partition.setdefault(p, []).append(index)
    if not together:
        return [_Group([p], indexes, [1] * len(indexes), [p] * len(indexes))
                for p, indexes in by_partition.items()]
    partitions = sorted(by_partition)
    place = {p: n for n, p in enumerate(partitions, 1)}
    return [_Group(partitions, list(range(len(of_item))), [place[p] for p in of_item],
                   of_item)]


class StateStore:
    """All reads and writes of shared task state for one cluster.

    ``partitions`` is the partition count a new cluster gets (None: the default); the
    first process records it in Redis and every process uses the recorded count. Asking
    for another count than the recorded one raises ConfigError. ``reply_to`` names this
    store's done channel: tasks sent with it in their envelope are announced there.
    """

    def __init__(
        self,
        redis: RedisConnection,
        cluster: str,
        fingerprint_ttl_s: int = DEFAULT_FINGERPRINT_TTL_S,
        result_ttl_s: int = DEFAULT_RESULT_TTL_S,
        events: StoreEvents | None = None,
        partitions: int | None = None,
        durability: AcceptDurability = DEFAULT_DURABILITY,
    ) -> None:
        self._connection = redis
        self.cluster = Keys(cluster).cluster  # checks the name
        self.partitions = None if partitions is None else check_partitions(partitions)
        self.events = events or StoreEvents()
        self.fingerprint_ttl_s = fingerprint_ttl_s
        self.result_ttl_s = result_ttl_s
        self.durability = durability
        self.reply_to = os.urandom(8).hex()
        self._keys: Keys | None = None
        self._facts: ServerFacts | None = None
        self.schedules = ScheduleStore(self._ready, self.now)

    @classmethod
    def from_url(cls, url: str, cluster: str, **kwargs: Any) -> StateStore:
        return cls(connect_redis(url), cluster, **kwargs)

    async def close(self) -> None:
        await self._connection.aclose()

    async def _ready(self) -> tuple[RedisClient, Keys]:
        client = await self._connection.client()
        if self._keys is None:
            self._keys = Keys(self.cluster, await self._partition_count(client))
        return client, self._keys

    async def _call_all(self, client: RedisClient, calls: Sequence[Call],
                        round_trip: str = "") -> list[Any]:
        """Every call's reply, sent in one pipeline; the first error raised. A named round
        trip is timed for the metrics."""
        started = time.perf_counter()
        replies = (await run(client, calls)).replies
        if round_trip:
            self.events.round_trip(round_trip, time.perf_counter() - started)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    async def _partition_count(self, client: RedisClient) -> int:
        key = Keys(self.cluster).partition_count
        await client.set(key, self.partitions or DEFAULT_PARTITIONS, nx=True)
        recorded = int(await client.get(key) or 0)
        if self.partitions is not None and recorded != self.partitions:
            raise ConfigError(
                f"cluster {self.cluster!r} has {recorded} partitions (recorded in Redis); it "
                f"cannot be changed to {self.partitions}")
        return check_partitions(recorded)

    async def layout(self) -> Keys:
        """The cluster's key layout (the partition count is read, or recorded, once)."""
        return (await self._ready())[1]

    @property
    def clustered(self) -> bool:
        """Whether Redis is a Redis Cluster (known once connected)."""
        return self._connection.clustered

    async def ping(self) -> float:
        """Round trip to Redis in seconds (the first one also connects)."""
        client, _ = await self._ready()
        started = time.perf_counter()
        await client.ping()
        return time.perf_counter() - started

    async def server_facts(self, refresh: bool = False) -> ServerFacts:
        """What the accept durability depends on, as the servers say (asked once)."""
        if self._facts is None or refresh:
            client, _ = await self._ready()
            self._facts = await probe(client)
        return self._facts

    async def check_durability(self) -> ServerFacts:
        """Log how the accept durability is kept on these servers, or why it is not."""
        facts = await self.server_facts(refresh=True)
        log_facts(facts, self.durability)
        return facts

    # -- the node's writes -------------------------------------------------------

    def _groups(self, keys: Keys, task_ids: Sequence[str]) -> list[_Group]:
        return _groups(keys, task_ids, together=not self.clustered)

    @staticmethod
    def _partition_keys(keys: Keys, node_id: str, group: _Group) -> list[str]:
        """The keys of each partition a write script's call covers (``lua/transition.lua``;
        ``lua/accept.lua`` adds the scheduled zset)."""
        return [key for p in group.partitions for key in (
            keys.inflight(node_id, p), keys.retries(p), keys.dlq(p), keys.inflight_nodes(p))]

    async def accept(
        self, node_id: str, epoch: int, envelopes: Sequence[pb.TaskEnvelope]
    ) -> list[AcceptResult]:
        """Record these tasks as accepted by ``node_id``: one script call per partition,
        confirmed with the accept durability. A partition whose Redis fails answers
        UNAVAILABLE for its tasks; when every one fails, the error is raised."""
        if not envelopes:
            return []
        client, keys = await self._ready()
        facts = await self.server_facts()
        wait = facts.wait_command(self.durability)
        groups = self._groups(keys, [e.task_id for e in envelopes])
        calls = []
        for group in groups:
            call_keys = [key for p in group.partitions for key in (
                keys.inflight(node_id, p), keys.retries(p), keys.dlq(p), keys.inflight_nodes(p),
                keys.scheduled(p))]
            tasks = []
            for i, partition, place in group.items():
                env = envelopes[i]
                call_keys += [keys.task(env.task_id, partition), keys.fingerprint(
                    env.task_id, env.name, env.idempotency_key, partition)]
                tasks.append((env.task_id, SOURCE_NAMES[env.source], env.SerializeToString(),
                              env.attempt, env.reply_to, int(not env.idempotency_key), env.eta,
                              place))
            calls.append(Call(ACCEPT, call_keys, [
                node_id, epoch, self.fingerprint_ttl_s, len(group.partitions),
                keys.delay_channel, _pack(tasks)]))
        started = time.perf_counter()
        answered = await run(client, calls, wait)
        self.events.round_trip("accept", time.perf_counter() - started)
        failed = [r for r in answered.replies if isinstance(r, Exception)]
        if len(failed) == len(calls):
            raise failed[0]
        results: list[AcceptResult | None] = [None] * len(envelopes)
        for group, reply, waited in zip(groups, answered.replies, answered.waits, strict=True):
            indexes = group.indexes
            if isinstance(reply, Exception) or not confirmed(wait, waited):
                why = str(reply) if isinstance(reply, Exception) else (
                    f"{self.durability.value} durability not confirmed: {waited}")
                for i in indexes:
                    results[i] = AcceptResult(AcceptCode.UNAVAILABLE, envelopes[i].task_id,
                                              TaskState.UNKNOWN, why)
                continue
            for i, (code, task_id, state) in zip(indexes, msgpack.unpackb(reply), strict=True):
                results[i] = AcceptResult(AcceptCode(code), text(task_id),
                                          TaskState.parse(text(state)))
        done = [r for r in results if r is not None]
        return await self._with_duplicate_states(done)

    async def _with_duplicate_states(self, results: list[AcceptResult]) -> list[AcceptResult]:
        """Fill in the state of the tasks that duplicates are duplicates of."""
        duplicates = [i for i, r in enumerate(results) if r.code is AcceptCode.DUPLICATE]
        if not duplicates:
            return results
        states = await self.states([results[i].task_id for i in duplicates])
        for i, state in zip(duplicates, states, strict=True):
            results[i] = AcceptResult(AcceptCode.DUPLICATE, results[i].task_id, state)
        return results

    async def transition(self, node_id: str, epoch: int, ops: Sequence[Transition]) -> list[bool]:
        """Apply ``ops``; False for each op refused because the node no longer owns the task."""
        if not ops:
            return []
        client, keys = await self._ready()
        groups = self._groups(keys, [op.task_id for op in ops])
        calls = [
            Call(TRANSITION,
                 [*self._partition_keys(keys, node_id, group),
                  *(keys.task(ops[i].task_id, p) for i, p, _ in group.items())],
                 [node_id, epoch, self.result_ttl_s, keys.done_channel(""),
                  keys.retry_channel, len(group.partitions),
                  _pack([(*ops[i].packed(), place)
                         for i, place in zip(group.indexes, group.places, strict=True)])])
            for group in groups
        ]
        replies = await self._call_all(client, calls, "transition")
        applied = [False] * len(ops)
        for group, reply in zip(groups, replies, strict=True):
            for i, code in zip(group.indexes, reply, strict=True):
                applied[i] = code == ord("K")
        return applied

    async def record_progress(
        self, node_id: str, epoch: int, reports: Sequence[tuple[str, TaskProgress]]
    ) -> int:
        """Write the latest progress of tasks ``node_id`` runs under ``epoch`` (one call
        per partition group); how many were still its to write."""
        if not reports:
            return 0
        client, keys = await self._ready()
        groups = self._groups(keys, [task_id for task_id, _ in reports])
        calls = [
            Call(PROGRESS,
                 [*(keys.inflight(node_id, p) for p in group.partitions),
                  *(keys.task(reports[i][0], p) for i, p, _ in group.items())],
                 [epoch, len(group.partitions),
                  _pack([(reports[i][0], *progress_fields.record_fields(reports[i][1]), place)
                         for i, place in zip(group.indexes, group.places, strict=True)])])
            for group in groups
        ]
        replies = await self._call_all(client, calls, "progress")
        return sum(int(written) for written in replies)

    async def take_tokens(self, asks: Mapping[str, TokenAsk]) -> dict[str, TokenGrant]:
        """Take tokens from the cluster-wide buckets of these task names, in one call."""
        if not asks:
            return {}
        client, keys = await self._ready()
        names = list(asks)
        started = time.perf_counter()
        raw = await call(client, TOKENS, [keys.rate_bucket(name) for name in names],
                         [_pack([(asks[n].wanted, repr(asks[n].rate_per_s), repr(asks[n].burst))
                                 for n in names])])
        self.events.round_trip("tokens", time.perf_counter() - started)
        return {name: TokenGrant(int(granted), float(wait))
                for name, (granted, wait) in zip(names, msgpack.unpackb(raw), strict=True)}

    # -- the handoff leases of ordered keys (``lua/order.lua``) ---------------------------

    async def take_order_leases(
        self, holders: Mapping[str, str], ttl_s: float
    ) -> dict[str, LeaseAnswer]:
        """Take the leases of these ordered routing keys, each for its holder (routing key
        -> holder), for ``ttl_s``: granted where free or already that holder's (its TTL
        starts over), else who holds it and for how long still."""
        replies = await self._order_leases("take", holders, ttl_s)
        return {key: LeaseAnswer(True) if reply[0] == 1
                else LeaseAnswer(False, text(reply[1]), max(0, int(reply[2])) / 1000)
                for key, reply in replies.items()}

    async def renew_order_leases(
        self, holders: Mapping[str, str], ttl_s: float
    ) -> dict[str, bool]:
        """Start the TTL of these leases over where each is still its holder's; False
        where it is not (lost: it expired, and another node may hold it now)."""
        replies = await self._order_leases("renew", holders, ttl_s)
        return {key: reply == 1 for key, reply in replies.items()}

    async def release_order_leases(self, holders: Mapping[str, str]) -> dict[str, bool]:
        """Give up these leases where each is still its holder's (False where not)."""
        replies = await self._order_leases("release", holders, 0.0)
        return {key: reply == 1 for key, reply in replies.items()}

    async def _order_leases(
        self, op: str, holders: Mapping[str, str], ttl_s: float
    ) -> dict[str, Any]:
        """One ``lua/order.lua`` call per partition group, in one pipeline."""
        if op != "release" and not (ttl_s > 0 and math.isfinite(ttl_s)):
            raise ConfigError(f"a lease TTL must be a positive number of seconds, got {ttl_s!r}")
        if not holders:
            return {}
        client, keys = await self._ready()
        routing_keys = list(holders)
        ttl_ms = max(1, round(ttl_s * 1000))
        groups = _groups_of([keys.key_partition(k) for k in routing_keys],
                            together=not self.clustered)
        calls = [Call(ORDER, [keys.order_lease(routing_keys[i], p) for i, p, _ in group.items()],
                      [op, ttl_ms, *(holders[routing_keys[i]] for i in group.indexes)])
                 for group in groups]
        replies = await self._call_all(client, calls, f"order-{op}")
        return {routing_keys[i]: answer for group, reply in zip(groups, replies, strict=True)
                for i, answer in zip(group.indexes, reply, strict=True)}

    async def publish_done(self, task_id: str, reply_to: str) -> None:
        """Announce to the sender named by ``reply_to`` that ``task_id`` has its outcome
        (nothing to announce to without one)."""
        if reply_to:
            client, keys = await self._ready()
            await client.publish(keys.done_channel(reply_to), task_id)

    async def recover(
        self, node_id: str, max_epoch: int | None, max_recoveries: int,
        limit: int = SCAN_BATCH,
    ) -> Recovery:
        """Move ``node_id``'s in-flight tasks of owner epochs up to ``max_epoch`` (None: all)
        to the retry set, due now, reading at most ``limit`` entries of each partition per
        step. ``max_recoveries`` > 0 counts this as a crash recovery of each task and
        dead-letters one recovered more often than that (poison); 0 does not count it."""
        client, keys = await self._ready()
        cursors = {p: 0 for p in await self._partitions_holding(node_id)}
        recovered = poisoned = 0
        while cursors:
            async with client.pipeline(transaction=False) as pipe:
                for p, cursor in cursors.items():
                    pipe.hscan(keys.inflight(node_id, p), cursor, count=limit)
                scans = await pipe.execute()
            ids: list[str] = []
            for (p, _), (cursor, entries) in zip(cursors.items(), scans, strict=True):
                cursors[p] = int(cursor)
                ids += [text(i) for i, epoch in entries.items()
                        if max_epoch is None or int(epoch) <= max_epoch]
            counts = await self._recover_calls(node_id, max_epoch, max_recoveries, ids)
            recovered += counts.recovered
            poisoned += counts.poisoned
            cursors = {p: c for p, c in cursors.items() if c}
        return Recovery(recovered, poisoned, 0)

    async def _recover_calls(
        self, node_id: str, max_epoch: int | None, max_recoveries: int, ids: Sequence[str]
    ) -> Recovery:
        if not ids:
            return Recovery(0, 0, 0)
        client, keys = await self._ready()
        calls = [
            Call(RECOVER,
                 [*self._partition_keys(keys, node_id, group),
                  *(keys.task(ids[i], p) for i, p, _ in group.items())],
                 [node_id, "" if max_epoch is None else max_epoch, max_recoveries,
                  keys.done_channel(""),
                  keys.retry_channel, len(group.partitions),
                  _pack([(ids[i], place)
                         for i, place in zip(group.indexes, group.places, strict=True)])])
            for group in self._groups(keys, ids)
        ]
        replies = await self._call_all(client, calls)
        return Recovery(sum(int(r[0]) for r in replies), sum(int(r[1]) for r in replies), 0)

    async def hand_back(self, node_id: str, task_ids: Iterable[str], max_epoch: int) -> int:
        """Move these in-flight tasks of ``node_id`` (of owner epochs up to ``max_epoch``) to
        the retry set, due now; no attempt used, no recovery counted."""
        return (await self._recover_calls(node_id, max_epoch, 0, list(task_ids))).recovered

    async def _partitions_holding(self, node_id: str) -> list[int]:
        client, keys = await self._ready()
        async with client.pipeline(transaction=False) as pipe:
            for p in keys.all_partitions:
                pipe.sismember(keys.inflight_nodes(p), node_id)
            held = await pipe.execute()
        return [p for p, member in zip(keys.all_partitions, held, strict=True) if member]

    async def inflight(self, node_id: str) -> dict[str, int]:
        """Task id -> owner epoch of the tasks Redis holds in flight on ``node_id``."""
        client, keys = await self._ready()
        partitions = await self._partitions_holding(node_id)
        async with client.pipeline(transaction=False) as pipe:
            for p in partitions:
                pipe.hgetall(keys.inflight(node_id, p))
            hashes = await pipe.execute()
        return {text(k): int(v) for entries in hashes for k, v in entries.items()}

    async def inflight_nodes(self) -> set[str]:
        """Every node that holds tasks in flight in some partition (the recovery's
        candidates); a node leaves once its last entry is gone."""
        return {node for nodes in (await self._inflight_nodes()).values() for node in nodes}

    async def _inflight_nodes(self) -> dict[int, list[str]]:
        """Partition -> the nodes with in-flight tasks there, sorted."""
        client, keys = await self._ready()
        async with client.pipeline(transaction=False) as pipe:
            for p in keys.all_partitions:
                pipe.smembers(keys.inflight_nodes(p))
            members = await pipe.execute()
        return {p: sorted(text(n) for n in nodes)
                for p, nodes in zip(keys.all_partitions, members, strict=True) if nodes}

    # -- cancelling ------------------------------------------------------------------

    async def cancel(self, task_id: str) -> TaskState:
        """Cancel a task that has not finished; the state it was in. A waiting task never
        runs; a queued or running one is fenced off and its node told to stop it.

        Raises TaskAlreadyFinished for a task with its outcome, TaskNotFound for no record.
        """
        client, keys = await self._ready()
        p = keys.partition_of(task_id)
        node = ""
        for _ in range(5):  # the owner read can go stale only while the task moves on
            code, detail = await call(client, CANCEL, [
                keys.task(task_id, p), keys.retries(p), keys.scheduled(p),
                keys.inflight(node, p), keys.inflight_nodes(p)], [
                task_id, node, self.result_ttl_s, keys.done_channel(""), keys.cancel_channel("")])
            code, detail = text(code), text(detail)
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
            await on_cancel(text(data))

        client, keys = await self._ready()
        await listen_forever(client, keys.cancel_channel(node_id), decoded, on_subscribed)

    # -- retries and delayed tasks -------------------------------------------------

    async def claim_due(self, lease_s: float, limit: int = 500,
                        waiting: Waiting = Waiting.RETRY) -> Claimed:
        """Lease up to ``limit`` due tasks of ``waiting`` (the earliest first, over every
        partition) for ``lease_s`` seconds (Redis' clock; see ``lua/claim.lua``)."""
        client, keys = await self._ready()
        now = await self.now()
        async with client.pipeline(transaction=False) as pipe:
            for p in keys.all_partitions:
                pipe.zrangebyscore(waiting.key(keys, p), "-inf", repr(now), start=0, num=limit,
                                   withscores=True)
            due = await pipe.execute()
        earliest = sorted(((float(score), text(task_id)) for entries in due
                           for task_id, score in entries))[:limit]
        ids = [task_id for _, task_id in earliest]
        calls = [Call(CLAIM, [*(waiting.key(keys, p) for p in group.partitions),
                              *(keys.task(ids[i], p) for i, p, _ in group.items())],
                      [lease_s, len(group.partitions),
                       _pack([(ids[i], place)
                              for i, place in zip(group.indexes, group.places, strict=True)])])
                 for group in self._groups(keys, ids)]
        replies = await self._call_all(client, calls) if calls else []
        claimed = []
        late = 0.0
        for raw in replies:
            for i in range(0, len(raw) - 1, 4):
                envelope = pb.TaskEnvelope()
                envelope.ParseFromString(raw[i + 1])
                claimed.append(DueTask(text(raw[i]), envelope, int(raw[i + 2]), int(raw[i + 3])))
            late = max(late, float(raw[-1]))
        return Claimed(claimed, late)

    async def bury(
        self, task_id: str, error_type: str, message: str, dead_reason: str = "permanent",
        waiting: Waiting = Waiting.RETRY,
    ) -> bool:
        """Move a task waiting in ``waiting`` straight to the DLQ (its dispatch was refused)."""
        client, keys = await self._ready()
        p = keys.partition_of(task_id)
        return bool(await call(client, BURY, [waiting.key(keys, p), keys.dlq(p),
                                              keys.task(task_id, p)],
                               [task_id, error_type, message, dead_reason,
                                keys.done_channel("")]))

    async def due_in(self, waiting: Waiting = Waiting.RETRY) -> float | None:
        """Seconds until the earliest task of ``waiting`` in any partition is due by Redis'
        clock (<= 0: due now); None when every partition's set is empty."""
        client, keys = await self._ready()
        async with client.pipeline(transaction=False) as pipe:
            for p in keys.all_partitions:
                pipe.zrange(waiting.key(keys, p), 0, 0, withscores=True)
            firsts = await pipe.execute()
        earliest = min((float(first[0][1]) for first in firsts if first), default=None)
        return None if earliest is None else earliest - await self.now()

    async def now(self) -> float:
        """Redis' clock, in unix seconds: the one clock of every time the store keeps."""
        client, _ = await self._ready()
        seconds, micros = await client.time()
        return float(seconds + micros / 1e6)

    async def queue_sizes(self) -> QueueSizes:
        """How many tasks wait in the retry set, the DLQ and the scheduled set (one
        pipeline)."""
        client, keys = await self._ready()
        async with client.pipeline(transaction=False) as pipe:
            for p in keys.all_partitions:
                pipe.zcard(keys.retries(p))
                pipe.zcard(keys.dlq(p))
                pipe.zcard(keys.scheduled(p))
            sizes = await pipe.execute()
        return QueueSizes(sum(sizes[0::3]), sum(sizes[1::3]), sum(sizes[2::3]))

    # -- watching ------------------------------------------------------------------

    async def watch_done(
        self, on_done: Callable[[str], Awaitable[None]],
        on_subscribed: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Call ``on_done(task_id)`` for each task sent with this store's ``reply_to`` that is
        announced as done; ends when cancelled.

        ``on_subscribed`` runs after every (re)subscription, to catch up on what was
        announced while nobody listened.
        """
        async def decoded(data: bytes) -> None:
            await on_done(text(data))

        client, keys = await self._ready()
        await listen_forever(client, keys.done_channel(self.reply_to), decoded, on_subscribed)

    async def watch_wakes(self, waiting: Waiting, on_wake: Callable[[], Awaitable[None]]) -> None:
        """Call ``on_wake()`` when a task joins ``waiting``, and after every (re)subscription
        (a wake sent while nobody listened is lost); ends when cancelled."""
        async def woken(_: bytes) -> None:
            await on_wake()

        client, keys = await self._ready()
        await listen_forever(client, waiting.channel(keys), woken, on_wake)

    # -- records -------------------------------------------------------------------

    async def record(self, task_id: str) -> TaskRecord | None:
        """The task's record, with when it expires (a finished task's), in one round trip."""
        client, keys = await self._ready()
        async with client.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.task(task_id))
            pipe.pttl(keys.task(task_id))
            raw, ttl_ms = await pipe.execute()
        if not raw:
            return None
        record = TaskRecord.from_hash(task_id, raw)
        if ttl_ms > 0:
            record.expires_at = time.time() + ttl_ms / 1000
        return record

    async def progress(self, task_id: str) -> TaskProgress | None:
        """The latest progress the task's record holds."""
        client, keys = await self._ready()
        value, meta, at = await client.hmget(
            keys.task(task_id), "progress", "progress_meta", "progress_at")
        return progress_fields.from_record(value, meta, at)

    async def records(self, task_ids: Iterable[str]) -> list[TaskRecord | None]:
        ids = list(task_ids)
        if not ids:
            return []
        client, keys = await self._ready()
        async with client.pipeline(transaction=False) as pipe:
            for task_id in ids:
                pipe.hgetall(keys.task(task_id))
            raws = await pipe.execute()
        return [
            TaskRecord.from_hash(task_id, raw) if raw else None
            for task_id, raw in zip(ids, raws, strict=True)
        ]

    async def inflight_count(self) -> int:
        """Tasks Redis holds in flight (queued or running) on any node."""
        return sum((await self.inflight_counts()).values())

    async def inflight_counts(self) -> dict[str, int]:
        """Node id -> how many tasks Redis holds in flight on it (nodes holding none are
        left out); two round trips, whatever the counts."""
        client, keys = await self._ready()
        pairs = [(p, node) for p, nodes in (await self._inflight_nodes()).items()
                 for node in nodes]
        async with client.pipeline(transaction=False) as pipe:
            for p, node in pairs:
                pipe.hlen(keys.inflight(node, p))
            lengths = await pipe.execute()
        counts: dict[str, int] = {}
        for (_, node), length in zip(pairs, lengths, strict=True):
            counts[node] = counts.get(node, 0) + int(length)
        return counts

    async def states(self, task_ids: Sequence[str]) -> list[TaskState]:
        """Each task's state; UNKNOWN for a task without a record."""
        if not task_ids:
            return []
        client, keys = await self._ready()
        async with client.pipeline(transaction=False) as pipe:
            for task_id in task_ids:
                pipe.hget(keys.task(task_id), "state")
            return [TaskState.parse(text(s)) for s in await pipe.execute()]

    # -- the dead-letter queue -----------------------------------------------------

    async def dlq_size(self) -> int:
        return (await self.queue_sizes()).dlq

    async def dlq_pages(
        self, since: float | None = None, until: float | None = None, page_size: int = DLQ_PAGE
    ) -> AsyncIterator[list[tuple[str, float]]]:
        """Every DLQ entry dead-lettered between ``since`` and ``until`` (both inclusive) as
        (task id, dead-lettered at), oldest first, one bounded read per page.

        Each page resumes after the last entry of the one before (by time, equal times by
        id), so entries that leave or join meanwhile never make another one skip or repeat.
        """
        _, keys = await self._ready()
        low, high = listing.bound(since), listing.bound(until)
        count = max(1, page_size // keys.partitions)
        after: Entry | None = None
        while True:
            entries, frontier, _ = await self._walk(keys.dlq, low, high, after, count, False)
            if entries:
                yield [(task_id, float(score)) for task_id, score in entries]
            if frontier is None:
                return
            after = frontier

    async def dlq_list(
        self, query: TaskQuery | None = None, cursor: str | None = None, limit: int = 50,
        newest_first: bool = True, budget: int = SCAN_BUDGET,
    ) -> Page:
        """A page of DLQ entries that match ``query``, by dead-letter time (see ``listing``)."""
        _, keys = await self._ready()
        return await self._zset_page(keys.dlq, query or TaskQuery(), cursor, limit,
                                     newest_first, budget)

    async def dlq_count(self, since: float | None = None, until: float | None = None) -> int:
        """DLQ entries dead-lettered in a time range (both ends inclusive)."""
        client, keys = await self._ready()
        low, high = listing.bound(since) or "-inf", listing.bound(until) or "+inf"
        async with client.pipeline(transaction=False) as pipe:
            for p in keys.all_partitions:
                pipe.zcount(keys.dlq(p), low, high)
            return sum(await pipe.execute())

    async def retries_list(
        self, query: TaskQuery | None = None, cursor: str | None = None, limit: int = 50,
        budget: int = SCAN_BUDGET,
    ) -> Page:
        """A page of tasks waiting for a retry that match ``query``, soonest due first."""
        _, keys = await self._ready()
        return await self._zset_page(keys.retries, query or TaskQuery(), cursor, limit,
                                     False, budget)

    async def scheduled_list(
        self, query: TaskQuery | None = None, cursor: str | None = None, limit: int = 50,
        budget: int = SCAN_BUDGET,
    ) -> Page:
        """A page of delayed tasks and schedule ticks (SCHEDULED) that match ``query``,
        soonest eta first (the time range is over the eta)."""
        _, keys = await self._ready()
        return await self._zset_page(keys.scheduled, query or TaskQuery(), cursor, limit,
                                     False, budget)

    async def _walk(
        self, zset: Callable[[int], str], low: str, high: str, after: Entry | None,
        count: int, descending: bool,
    ) -> tuple[list[Entry], Entry | None, int]:
        """Up to ``count`` entries of each partition's zset after ``after``, merged (see
        ``listing.merge``): the entries up to the frontier, the frontier, entries read."""
        client, keys = await self._ready()
        after_id, after_score = after or ("", "")
        calls = [Call(ZAFTER, [zset(p)], ["desc" if descending else "asc", low, high,
                                          after_id, after_score, count + 1])
                 for p in keys.all_partitions]
        replies = await self._call_all(client, calls)
        reads = [[(text(r[i]), text(r[i + 1])) for i in range(0, len(r), 2)] for r in replies]
        complete = [len(read) <= count for read in reads]
        reads = [read[:count] for read in reads]
        entries, frontier = listing.merge(reads, complete, descending)
        return entries, frontier, sum(len(read) for read in reads)

    async def _zset_page(
        self, zset: Callable[[int], str], query: TaskQuery, cursor: str | None, limit: int,
        descending: bool, budget: int,
    ) -> Page:
        after = listing.parse_zset_cursor(cursor) if cursor else None
        listing.check_limit(limit)
        _, keys = await self._ready()
        count = max(1, budget // keys.partitions)
        if not query.patterned:
            count = min(count, limit)
        entries, reach, scanned = await self._walk(
            zset, listing.bound(query.since), listing.bound(query.until), after, count,
            descending)
        if not query.patterned and len(entries) > limit:
            entries = entries[:limit]
            reach = entries[-1]
        rows = await self._summaries(entries, query.patterns(), "")
        rows.sort(key=lambda row: listing.place((text(row[0]), text(row[1]))),
                  reverse=descending)
        if len(rows) > limit:
            rows = rows[:limit]
            reach = (text(rows[-1][0]), text(rows[-1][1]))
        return Page(listing.parse_rows(rows),
                    listing.zset_cursor(*reach) if reach is not None else None, scanned)

    async def _summaries(self, entries: Sequence[Entry], patterns: list[str], state: str
                         ) -> list[Any]:
        """The summary rows of ``entries`` that pass the filters (``lua/summaries.lua``)."""
        if not entries:
            return []
        client, keys = await self._ready()
        calls = [Call(SUMMARIES, [keys.task(entries[i][0], p) for i, p, _ in group.items()],
                      [state, *patterns, *(part for i in group.indexes for part in entries[i])])
                 for group in self._groups(keys, [task_id for task_id, _ in entries])]
        replies = await self._call_all(client, calls)
        return [row for reply in replies for row in reply]

    async def inflight_list(
        self, query: TaskQuery | None = None, state: TaskState | None = None,
        cursor: str | None = None, limit: int = 50, budget: int = SCAN_BUDGET,
    ) -> Page:
        """A page of tasks in flight on any node (queued or running, or only ``state``),
        partition by partition and node by node; ``query``'s time range does not apply.

        Whole HSCAN batches are read until ``limit`` matches or ``budget`` entries, so a
        page may hold a few more rows than ``limit``; an entry may show twice across
        pages, none that stays is skipped."""
        if state not in (None, TaskState.QUEUED, TaskState.RUNNING):
            raise listing.InvalidQuery(f"tasks in flight are QUEUED or RUNNING, not {state}")
        start, start_node, scan_cursor = listing.parse_inflight_cursor(cursor)
        listing.check_limit(limit)
        query = query or TaskQuery()
        patterns = query.patterns()
        only = listing.unescape(query.node) if query.node and listing.is_literal(query.node) else None
        client, keys = await self._ready()
        pairs = [(p, node) for p, nodes in (await self._inflight_nodes()).items()
                 for node in nodes
                 if (p, node) >= (start, start_node) and only in (None, node)]
        items: list[listing.Listed] = []
        scanned = 0
        for p, node in pairs:
            if (p, node) != (start, start_node):
                scan_cursor = "0"
            while True:
                next_cursor, entries = await client.hscan(
                    keys.inflight(node, p), int(scan_cursor), count=max(1, budget - scanned))
                scan_cursor = str(next_cursor)
                scanned += len(entries)
                rows = await self._summaries([(text(i), "") for i in entries],
                                             patterns, state.value if state else "")
                items += listing.parse_rows(rows)
                if scan_cursor == "0":
                    break
                if len(items) >= limit or scanned >= budget:
                    return Page(items, listing.inflight_cursor(p, node, scan_cursor), scanned)
            if len(items) >= limit or scanned >= budget:
                later = pairs[pairs.index((p, node)) + 1:]
                return Page(items, listing.inflight_cursor(*later[0], "0") if later else None,
                            scanned)
        return Page(items, None, scanned)

    async def dlq_times(self, task_ids: Sequence[str]) -> list[float | None]:
        """When each task was dead-lettered; None for one not in the DLQ."""
        if not task_ids:
            return []
        client, keys = await self._ready()
        async with client.pipeline(transaction=False) as pipe:
            for task_id in task_ids:
                pipe.zscore(keys.dlq(keys.partition_of(task_id)), task_id)
            scores = await pipe.execute()
        return [float(s) if s is not None else None for s in scores]

    async def dlq_purge(self, task_ids: Sequence[str]) -> int:
        """Remove these DLQ entries and their records; ids not in the DLQ are left alone."""
        if not task_ids:
            return 0
        client, keys = await self._ready()
        calls = [Call(PURGE, [*(keys.dlq(p) for p in group.partitions),
                              *(keys.task(task_ids[i], p) for i, p, _ in group.items())],
                      [len(group.partitions),
                       *(part for i, place in zip(group.indexes, group.places, strict=True)
                         for part in (task_ids[i], place))])
                 for group in self._groups(keys, task_ids)]
        replies = await self._call_all(client, calls)
        return sum(int(r) for r in replies)
