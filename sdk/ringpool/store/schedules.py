"""Periodic schedules in Redis: publish, read, pause, resume, remove, and claim ticks.

A schedule is a hash (``Keys.schedule(name)``) and its entry in its partition's
``schedules`` zset (name -> next tick, ``inf`` while paused), so the leader finds what
is due with one range read per partition, in one pipeline. ``lua/tick.lua`` claims a
tick exactly once, only while the schedule still names that tick as its next, and
turns it into a task held SCHEDULED in the scheduled set: the delay firer then sends
it like any delayed task. The tick's task id carries the schedule's slot, so the task
is made in the schedule's partition, in the same script call. Ticks are worked
out from Redis' clock (``clock``, the state store's ``now``), the one the delay firer
reads them with.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, cast

from ringpool.core.schedule import CatchUp, Timing
from ringpool.core.slots import new_task_id, schedule_slot
from ringpool.store.connection import RedisClient
from ringpool.store.keys import Keys
from ringpool.store.pubsub import listen_forever
from ringpool.store.scripts import Script, call
from ringpool.v1 import node_pb2 as pb

PUT = Script.load("schedule_put")
PAUSE = Script.load("schedule_pause")
TICK = Script.load("tick")

Entries = list[tuple[bytes, float]]  # (member, score) pairs of a zset read


class PutResult(StrEnum):
    """What publishing a schedule did (``lua/schedule_put.lua``)."""

    #: A new schedule.
    CREATED = "C"
    #: A new definition for an existing schedule: counts and pause kept, next tick anew.
    REPLACED = "R"
    #: The same definition again: nothing changed.
    UNCHANGED = "U"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else ("" if value is None else str(value))


def _float(value: Any) -> float | None:
    text = _text(value)
    return float(text) if text else None


@dataclass(frozen=True)
class StoredSchedule:
    """A schedule as Redis holds it: its definition, its next tick and its counts."""

    name: str
    key: str
    envelope: pb.TaskEnvelope  # the task each tick dispatches (no task id yet)
    timing: Timing
    paused: bool = False
    next_at: float | None = None  # None while paused
    fired: int = 0  # ticks made into tasks
    skipped: int = 0  # ticks missed in an outage and coalesced (see ringpool.core.schedule)
    last_tick_at: float | None = None
    last_task_id: str = ""
    origin: str = ""  # who published it: "api", or "node:<id>" for a declared schedule
    created_at: float | None = None
    updated_at: float | None = None

    @classmethod
    def from_hash(cls, name: str, raw: Mapping[bytes, bytes], score: float | None
                  ) -> StoredSchedule:
        get = raw.get
        envelope = pb.TaskEnvelope()
        envelope.ParseFromString(get(b"envelope") or b"")
        return cls(
            name=name, key=_text(get(b"key")), envelope=envelope,
            timing=Timing(cron=_text(get(b"cron")) or None, every_s=_float(get(b"every_s")),
                          tz=_text(get(b"tz")) or "UTC"),
            paused=get(b"paused") == b"1",
            next_at=score if score is not None and math.isfinite(score) else None,
            fired=int(get(b"fired") or 0), skipped=int(get(b"skipped") or 0),
            last_tick_at=_float(get(b"last_tick_at")), last_task_id=_text(get(b"last_task_id")),
            origin=_text(get(b"origin")), created_at=_float(get(b"created_at")),
            updated_at=_float(get(b"updated_at")),
        )

    @property
    def task_name(self) -> str:
        return self.envelope.name

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (the task's arguments as their JSON text)."""
        return {
            "name": self.name, "task": self.task_name, "key": self.key,
            "args": self.envelope.payload.decode(errors="replace"),
            "cron": self.timing.cron, "every_s": self.timing.every_s, "tz": self.timing.tz,
            "timing": self.timing.describe(), "paused": self.paused, "next_at": self.next_at,
            "fired": self.fired, "skipped": self.skipped, "last_tick_at": self.last_tick_at,
            "last_task_id": self.last_task_id or None, "origin": self.origin,
            "created_at": self.created_at, "updated_at": self.updated_at,
        }

    def tick_envelope(self, fire_at: float) -> pb.TaskEnvelope:
        """The task of the tick at ``fire_at``: a new id, due then."""
        envelope = pb.TaskEnvelope()
        envelope.CopyFrom(self.envelope)
        envelope.task_id = new_task_id(schedule_slot(self.name))
        envelope.eta = fire_at
        envelope.schedule = self.name
        return envelope


def digest(key: str, envelope: pb.TaskEnvelope, timing: Timing) -> str:
    """What tells one definition from another (the same one publishes as unchanged)."""
    parts = [key.encode(), envelope.SerializeToString(deterministic=True),
             (timing.cron or "").encode(), repr(timing.every_s).encode(), timing.tz.encode()]
    return hashlib.sha256(b"\0".join(parts)).hexdigest()


class ScheduleStore:
    """The schedules of one cluster (``StateStore.schedules``); ``layout`` gives the client
    and the key layout (the state store's, connected on first use), ``clock`` reads
    Redis'."""

    def __init__(self, layout: Callable[[], Awaitable[tuple[RedisClient, Keys]]],
                 clock: Callable[[], Awaitable[float]]) -> None:
        self._layout = layout
        self._clock = clock

    async def put(self, name: str, key: str, envelope: pb.TaskEnvelope, timing: Timing,
                  origin: str) -> PutResult:
        """Publish a schedule whose task ``envelope`` was checked by the caller."""
        template = pb.TaskEnvelope()
        template.CopyFrom(envelope)
        template.task_id = ""
        template.ring_version = 0
        fields: list[Any] = ["key", key, "envelope", template.SerializeToString(),
                             "cron", timing.cron or "", "every_s",
                             "" if timing.every_s is None else repr(timing.every_s),
                             "tz", timing.tz, "origin", origin]
        client, keys = await self._layout()
        code = await call(client, PUT, self._keys_of(keys, name), [
            name, digest(key, template, timing), timing.next_tick(await self._clock()),
            keys.schedule_channel, *fields])
        return PutResult(_text(code))

    @staticmethod
    def _keys_of(keys: Keys, name: str) -> list[str]:
        """A schedule's hash and its partition's schedules zset."""
        return [keys.schedule(name), keys.schedules(keys.schedule_partition(name))]

    async def get(self, name: str) -> StoredSchedule | None:
        client, keys = await self._layout()
        async with client.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.schedule(name))
            pipe.zscore(keys.schedules(keys.schedule_partition(name)), name)
            raw, score = await pipe.execute()
        return StoredSchedule.from_hash(name, raw, score) if raw else None

    async def all(self) -> list[StoredSchedule]:
        """Every schedule, by name."""
        entries = await self._entries(lambda pipe, key: pipe.zrange(key, 0, -1, withscores=True))
        return sorted(await self._read(entries), key=lambda s: s.name)

    async def due(self, now: float, limit: int = 100) -> list[StoredSchedule]:
        """Schedules whose next tick is at or before ``now``, soonest first."""
        entries = await self._entries(lambda pipe, key: pipe.zrangebyscore(
            key, "-inf", repr(now), start=0, num=limit, withscores=True))
        return await self._read(sorted(entries, key=lambda entry: entry[1])[:limit])

    async def _entries(self, read: Callable[[Any, str], Any]) -> Entries:
        """(name, next tick) entries of every partition's schedules zset, as ``read``
        reads each (in one pipeline)."""
        client, keys = await self._layout()
        async with client.pipeline(transaction=False) as pipe:
            for p in keys.all_partitions:
                read(pipe, keys.schedules(p))
            replies = await pipe.execute()
        return [entry for reply in replies for entry in cast(Entries, reply)]

    async def _read(self, entries: Entries) -> list[StoredSchedule]:
        if not entries:
            return []
        client, keys = await self._layout()
        names = [_text(name) for name, _ in entries]
        async with client.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hgetall(keys.schedule(name))
            raws = await pipe.execute()
        return [StoredSchedule.from_hash(name, raw, float(score))
                for name, raw, (_, score) in zip(names, raws, entries, strict=True) if raw]

    async def remove(self, name: str) -> bool:
        """Remove a schedule (tasks its ticks already made stay); False if there was none."""
        client, keys = await self._layout()
        schedule, schedules = self._keys_of(keys, name)
        async with client.pipeline(transaction=True) as pipe:  # one slot: the name's
            pipe.zrem(schedules, name)
            pipe.delete(schedule)
            removed, deleted = await pipe.execute()
        return bool(removed or deleted)

    async def pause(self, name: str) -> bool:
        """Stop a schedule's ticks until it is resumed; False if there is no such schedule."""
        client, keys = await self._layout()
        return bool(await call(client, PAUSE, self._keys_of(keys, name),
                               [name, "1", "", keys.schedule_channel]))

    async def resume(self, schedule: StoredSchedule) -> bool:
        """Resume a schedule from its next tick after now (ticks missed while paused are
        not caught up); False if it is gone."""
        client, keys = await self._layout()
        next_at = schedule.timing.next_tick(await self._clock())
        return bool(await call(client, PAUSE, self._keys_of(keys, schedule.name),
                               [schedule.name, "0", next_at, keys.schedule_channel]))

    async def claim_tick(self, schedule: StoredSchedule, due: float, catch_up: CatchUp) -> str:
        """Make the tick ``catch_up.fire_at`` into a task, exactly once; its id, or '' when
        the schedule moved on meanwhile (another leader claimed it, or it changed)."""
        client, keys = await self._layout()
        envelope = schedule.tick_envelope(catch_up.fire_at)
        p = keys.schedule_partition(schedule.name)
        claimed = await call(client, TICK, [
            *self._keys_of(keys, schedule.name), keys.scheduled(p),
            keys.task(envelope.task_id, p)], [
            schedule.name, repr(due), repr(catch_up.fire_at), catch_up.skipped,
            repr(catch_up.next_at), envelope.task_id, envelope.SerializeToString(),
            keys.delay_channel])
        return envelope.task_id if claimed else ""

    async def next_tick(self) -> float | None:
        """The soonest next tick of any running schedule."""
        firsts = await self._entries(lambda pipe, key: pipe.zrange(key, 0, 0, withscores=True))
        return min((score for _, score in firsts if math.isfinite(score)), default=None)

    async def watch_wakes(self, on_wake: Callable[[], Awaitable[None]]) -> None:
        """Call ``on_wake()`` when a schedule is added, changed or resumed, and after every
        (re)subscription; ends when cancelled."""
        async def woken(_: bytes) -> None:
            await on_wake()

        client, keys = await self._layout()
        await listen_forever(client, keys.schedule_channel, woken, on_wake)
