"""The Redis state layer: durable accept, transitions, retries, recovery and the DLQ.

Every multi-key change is one Lua script (``lua/``), so each is atomic and
one round trip per batch. Nodes, the coordinator, the SDK and ``taskctl`` all
go through ``StateStore``; nothing else knows the key layout.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, cast

import msgpack
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ringpool.core.naming import Names
from ringpool.store.events import StoreEvents
from ringpool.v1 import node_pb2 as pb

SOURCE_NAMES = {pb.SOURCE_CLIENT: "client", pb.SOURCE_RETRY: "retry", pb.SOURCE_REPLAY: "replay"}
ACCEPT_CODES = {"A": "accepted", "D": "duplicate", "N": "not_redeliverable"}
DEFAULT_FINGERPRINT_TTL_S = 24 * 3600
DEFAULT_RESULT_TTL_S = 24 * 3600
TERMINAL_STATES = frozenset({"SUCCEEDED", "FAILED"})


def _script(name: str) -> str:
    return resources.files(__package__).joinpath(f"lua/{name}.lua").read_text()


def connect_redis(url: str, **kwargs: Any) -> aioredis.Redis:
    """An asyncio Redis client that rides out restarts: reconnects with backoff."""
    options: dict[str, Any] = {
        "socket_connect_timeout": 5.0,
        "socket_timeout": 10.0,
        "health_check_interval": 15,
        "retry": Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), retries=20),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
    }
    options.update(kwargs)
    return aioredis.Redis.from_url(url, **options)


@dataclass(frozen=True)
class AcceptResult:
    """``code`` is ``accepted``, ``duplicate`` or ``not_redeliverable``."""

    code: str
    task_id: str
    state: str


@dataclass(frozen=True)
class Transition:
    """One state change of a running task; see ``lua/transition.lua``."""

    op: str  # start | ok | retry | dead
    task_id: str
    a: bytes | str = ""
    b: str = ""
    c: str = ""
    d: str | float = ""
    publish: bool = False
    started_at: float = 0.0  # when the run began (wall clock); recorded with every op


@dataclass(frozen=True)
class DueTask:
    task_id: str
    envelope: pb.TaskEnvelope
    attempt: int


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
    state: str
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
    envelope: pb.TaskEnvelope = field(default_factory=pb.TaskEnvelope)

    @classmethod
    def from_hash(cls, task_id: str, raw: Mapping[Any, Any]) -> TaskRecord:
        get = raw.get
        envelope = pb.TaskEnvelope()
        if get(b"envelope"):
            envelope.ParseFromString(raw[b"envelope"])
        return cls(
            task_id=task_id,
            state=_text(get(b"state")),
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
            envelope=envelope,
        )

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (the envelope's payload decoded as text)."""
        data = {k: v for k, v in self.__dict__.items() if k not in ("envelope", "result")}
        data["result"] = self.result.decode(errors="replace") if self.result is not None else None
        data["args"] = self.envelope.payload.decode(errors="replace")
        data["headers"] = dict(self.envelope.headers)
        data["idempotency_key"] = self.envelope.idempotency_key
        return data


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
        self.redis = client
        self.events = events or StoreEvents()
        self.names = Names(cluster)
        self.fingerprint_ttl_s = fingerprint_ttl_s
        self.result_ttl_s = result_ttl_s
        self._record_prefix = self.names.task("")
        self._accept = client.register_script(_script("accept"))
        self._transition = client.register_script(_script("transition"))
        self._recover = client.register_script(_script("recover"))
        self._claim = client.register_script(_script("claim"))
        self._purge = client.register_script(_script("purge"))
        self._bury = client.register_script(_script("bury"))

    @classmethod
    def from_url(cls, url: str, cluster: str, **kwargs: Any) -> StateStore:
        return cls(connect_redis(url), cluster, **kwargs)

    async def close(self) -> None:
        await self.redis.aclose()

    def fingerprint_key(self, envelope: pb.TaskEnvelope) -> str:
        """The caller's idempotency key scoped by task name, else the task id itself."""
        if envelope.idempotency_key:
            return self.names.fingerprint(f"k:{envelope.name}:{envelope.idempotency_key}")
        return self.names.fingerprint(f"t:{envelope.task_id}")

    # -- the node's writes -------------------------------------------------------

    async def accept(
        self, node_id: str, epoch: int, envelopes: Sequence[pb.TaskEnvelope]
    ) -> list[AcceptResult]:
        if not envelopes:
            return []
        names = self.names
        tasks = _pack([
            (env.task_id, SOURCE_NAMES[env.source], env.SerializeToString(), env.attempt,
             self.fingerprint_key(env))
            for env in envelopes
        ])
        started = time.perf_counter()
        raw = await self._accept(
            keys=[names.inflight(node_id), names.retries, names.dlq, names.inflight_nodes],
            args=[node_id, epoch, time.time(), self.fingerprint_ttl_s, self._record_prefix, tasks],
        )
        self.events.round_trip("accept", time.perf_counter() - started)
        return [
            AcceptResult(ACCEPT_CODES[code], task_id, state)
            for code, task_id, state in msgpack.unpackb(raw)
        ]

    async def transition(self, node_id: str, epoch: int, ops: Sequence[Transition]) -> list[bool]:
        """Apply ``ops``; False for each op refused because the node no longer owns the task."""
        if not ops:
            return []
        names = self.names
        packed = _pack([(op.op, op.task_id, op.a, op.b, op.c, op.d, int(op.publish), op.started_at)
                        for op in ops])
        started = time.perf_counter()
        raw = await self._transition(
            keys=[names.inflight(node_id), names.retries, names.dlq],
            args=[epoch, time.time(), self.result_ttl_s, self._record_prefix,
                  names.done_channel, names.retry_channel, packed],
        )
        self.events.round_trip("transition", time.perf_counter() - started)
        return [code == ord("K") for code in raw]

    async def recover(
        self, node_id: str, keep_epoch: int | None, max_recoveries: int, limit: int = 1000
    ) -> Recovery:
        """Move ``node_id``'s in-flight tasks (except ``keep_epoch``'s) to the retry set."""
        names = self.names
        total = Recovery(0, 0, 0)
        while True:
            recovered, poisoned, left = await self._recover(
                keys=[names.inflight(node_id), names.retries, names.dlq],
                args=[time.time(), "" if keep_epoch is None else keep_epoch, max_recoveries,
                      self._record_prefix, names.done_channel, names.retry_channel, limit],
            )
            total = Recovery(total.recovered + recovered, total.poisoned + poisoned, left)
            if not left:
                return total

    async def hand_back(self, node_id: str, task_ids: Iterable[str]) -> int:
        """Move these in-flight tasks of ``node_id`` to the retry set (no attempt used)."""
        names = self.names
        recovered, _, _ = await self._recover(
            keys=[names.inflight(node_id), names.retries, names.dlq],
            args=[time.time(), "", 0, self._record_prefix, names.done_channel,
                  names.retry_channel, 1_000_000, _pack(list(task_ids))],
        )
        return int(recovered)

    async def inflight(self, node_id: str) -> dict[str, int]:
        raw = await self.redis.hgetall(self.names.inflight(node_id))
        return {_text(k): int(v) for k, v in raw.items()}

    async def inflight_nodes(self) -> set[str]:
        return {_text(n) for n in await self.redis.smembers(self.names.inflight_nodes)}

    # -- retries -------------------------------------------------------------------

    async def claim_due(self, lease_s: float, limit: int = 500) -> list[DueTask]:
        now = time.time()
        raw = await self._claim(
            keys=[self.names.retries], args=[now, now + lease_s, limit, self._record_prefix]
        )
        due = []
        for i in range(0, len(raw), 3):
            envelope = pb.TaskEnvelope()
            envelope.ParseFromString(raw[i + 1])
            due.append(DueTask(_text(raw[i]), envelope, int(raw[i + 2])))
        return due

    async def bury(self, task_id: str, error_type: str, message: str) -> bool:
        """Move a waiting retry straight to the DLQ (its re-dispatch was refused)."""
        names = self.names
        return bool(await self._bury(
            keys=[names.retries, names.dlq],
            args=[task_id, names.task(task_id), time.time(), error_type, message,
                  names.done_channel],
        ))

    async def next_due(self) -> float | None:
        first = await self.redis.zrange(self.names.retries, 0, 0, withscores=True)
        return float(first[0][1]) if first else None

    async def retry_size(self) -> int:
        return int(await self.redis.zcard(self.names.retries))

    # -- records -------------------------------------------------------------------

    async def record(self, task_id: str) -> TaskRecord | None:
        raw = await self.redis.hgetall(self.names.task(task_id))
        return TaskRecord.from_hash(task_id, raw) if raw else None

    async def records(self, task_ids: Iterable[str]) -> list[TaskRecord | None]:
        ids = list(task_ids)
        async with self.redis.pipeline(transaction=False) as pipe:
            for task_id in ids:
                pipe.hgetall(self.names.task(task_id))
            raws = await pipe.execute()
        return [
            TaskRecord.from_hash(task_id, raw) if raw else None
            for task_id, raw in zip(ids, raws, strict=True)
        ]

    async def states(self, task_ids: Sequence[str]) -> list[str]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for task_id in task_ids:
                pipe.hget(self.names.task(task_id), "state")
            return [_text(s) for s in await pipe.execute()]

    # -- the dead-letter queue -----------------------------------------------------

    async def dlq_size(self) -> int:
        return int(await self.redis.zcard(self.names.dlq))

    async def dlq_ids(
        self, since: float | None = None, until: float | None = None, limit: int | None = None
    ) -> list[tuple[str, float]]:
        """DLQ task ids with the time they were dead-lettered, oldest first."""
        raw = await self.redis.zrangebyscore(
            self.names.dlq, since if since is not None else "-inf",
            until if until is not None else "+inf",
            start=0 if limit is not None else None, num=limit, withscores=True,
        )
        pairs = cast(list[tuple[bytes, float]], raw)
        return [(_text(task_id), float(score)) for task_id, score in pairs]

    async def dlq_purge(self, task_ids: Sequence[str]) -> int:
        if not task_ids:
            return 0
        return int(
            await self._purge(keys=[self.names.dlq], args=[self._record_prefix, *task_ids])
        )

    async def ping(self) -> float:
        """Round trip to Redis in seconds."""
        started = time.perf_counter()
        await self.redis.ping()
        return time.perf_counter() - started
