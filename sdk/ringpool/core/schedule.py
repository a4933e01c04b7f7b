"""Periodic schedules: what one is, when it ticks, and the ones task modules declare.

A schedule dispatches one task to one key at each of its ticks. ``every=SECONDS``
ticks at the multiples of SECONDS since the Unix epoch (``every=60``: on each
minute). ``cron="*/5 * * * *"`` ticks at the times a five-field cron expression
names, read in the IANA time zone ``tz`` (default UTC) by ``cronsim``, with Debian
cron's rules across daylight-saving changes: a time that a spring-forward skips
runs when the gap ends; a time that a fall-back repeats runs once, unless the
expression's minute or hour is a wildcard (``0 * * * *`` runs each real hour).

Catch-up after an outage (no coordinator led while ticks fell due): the missed ticks
are coalesced. The first pass afterwards fires the latest missed tick once, counts
the earlier ones as skipped, and the schedule goes on from its next tick after now.
A pass that is merely late fires the tick it is late for, and skips nothing.

``periodic(...)`` declares a schedule in a task module; importing the module only
records it (no network), and each node publishes the declared schedules at start-up.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from ringpool.core.envelope import DEFAULT_LIMITS, Limits, build, check_key
from ringpool.errors import InvalidSchedule
from ringpool.task import Task
from ringpool.v1 import node_pb2 as pb

MIN_EVERY_S = 1.0
MAX_EVERY_S = 366 * 24 * 3600.0
MAX_COUNTED_SKIPS = 10_000  # skipped ticks are counted exactly up to this many
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}")


def check_schedule_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidSchedule(
            f"a schedule name is 1-200 letters, digits and _ . : - (starting with a letter or "
            f"digit), got {name!r}")
    return name


def _zone(tz: object) -> ZoneInfo:
    if not isinstance(tz, str) or not tz:
        raise InvalidSchedule(f"tz must be an IANA time zone name (e.g. 'Europe/Berlin'), got {tz!r}")
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidSchedule(f"unknown time zone {tz!r} (use an IANA name, e.g. "
                              "'Europe/Berlin')") from None


@dataclass(frozen=True)
class CatchUp:
    """What a pass does for a schedule whose tick ``due`` has come (see the module doc)."""

    fire_at: float  # the tick to fire now: ``due``, or the latest tick missed after it
    skipped: int  # missed ticks before ``fire_at`` that are not fired
    next_at: float  # the schedule's next tick, after now


@dataclass(frozen=True)
class Timing:
    """When a schedule ticks: ``cron`` in ``tz``, or ``every_s`` seconds."""

    cron: str | None = None
    every_s: float | None = None
    tz: str = "UTC"

    def __post_init__(self) -> None:
        if (self.cron is None) == (self.every_s is None):
            raise InvalidSchedule("give a schedule cron=EXPR or every=SECONDS (one of them)")
        zone = _zone(self.tz)
        if self.every_s is not None:
            every = self.every_s
            if isinstance(every, bool) or not isinstance(every, int | float) \
                    or not MIN_EVERY_S <= every <= MAX_EVERY_S:  # also refuses NaN
                raise InvalidSchedule(f"every must be a number of seconds in [{MIN_EVERY_S:g}, "
                                      f"{MAX_EVERY_S:g}], got {every!r}")
            object.__setattr__(self, "every_s", float(every))
            return
        if not isinstance(self.cron, str) or len(self.cron.split()) != 5:
            raise InvalidSchedule(f"cron must have five fields (minute hour day month weekday), "
                                  f"got {self.cron!r}; use every=SECONDS below a minute")
        try:
            next(CronSim(self.cron, datetime.now(zone)))
        except (CronSimError, StopIteration) as exc:
            raise InvalidSchedule(f"bad cron expression {self.cron!r}: {exc}") from None

    def describe(self) -> str:
        if self.every_s is not None:
            return f"every {self.every_s:g}s"
        return f"cron {self.cron}" + ("" if self.tz == "UTC" else f" ({self.tz})")

    def next_tick(self, after: float) -> float:
        """The first tick strictly after ``after`` (unix seconds)."""
        if self.every_s is not None:
            return (math.floor(after / self.every_s) + 1) * self.every_s
        return self._cron(after).timestamp()

    def last_tick(self, at: float) -> float:
        """The latest tick at or before ``at``."""
        if self.every_s is not None:
            return math.floor(at / self.every_s) * self.every_s
        assert self.cron is not None
        start = datetime.fromtimestamp(at, ZoneInfo(self.tz)) + timedelta(microseconds=1)
        return next(CronSim(self.cron, start, reverse=True)).timestamp()

    def catch_up(self, due: float, now: float) -> CatchUp:
        """What to fire now for the tick ``due`` (<= ``now``), and when to tick next."""
        latest = max(due, self.last_tick(now))
        if self.every_s is not None:
            skipped = round((latest - due) / self.every_s)
        else:
            skipped, tick = 0, due
            while skipped < MAX_COUNTED_SKIPS and (tick := self.next_tick(tick)) <= latest:
                skipped += 1
        return CatchUp(latest, skipped, self.next_tick(max(latest, now)))

    def _cron(self, after: float) -> datetime:
        assert self.cron is not None
        zone = ZoneInfo(self.tz)
        # cronsim drops a start's microseconds; ticks fall on whole minutes, so the first
        # tick after the whole second is also the first after ``after``.
        start = datetime.fromtimestamp(math.floor(after), zone)
        return next(CronSim(self.cron, start))


def timing(cron: str | None = None, every: float | timedelta | None = None,
           tz: str | None = None) -> Timing:
    """A ``Timing`` from ``schedule()``'s arguments (``every`` in seconds or a timedelta)."""
    if isinstance(every, timedelta):
        every = every.total_seconds()
    if tz is not None and cron is None:
        raise InvalidSchedule("tz applies to a cron schedule only (every= counts seconds)")
    return Timing(cron=cron, every_s=every, tz="UTC" if tz is None else tz)


@dataclass(frozen=True)
class Schedule:
    """A named schedule: dispatch ``task`` to ``key`` at each tick of ``timing``."""

    name: str
    key: str
    task: Task
    timing: Timing

    def __post_init__(self) -> None:
        check_schedule_name(self.name)
        check_key(self.key)
        if not isinstance(self.task, Task):
            raise InvalidSchedule(f"a schedule's task must be a Task, got {type(self.task).__name__}")
        if self.task.idempotency_key:
            raise InvalidSchedule("a schedule's task takes no idempotency_key: each tick is a "
                                  "new task, made once")

    def template(self, limits: Limits = DEFAULT_LIMITS) -> pb.TaskEnvelope:
        """The checked envelope each tick copies (raises the DispatchError a node would)."""
        return build(self.key, self.task, 0, None, limits)


DECLARED: dict[str, Schedule] = {}


def periodic(name: str, key: str, task: Task, *, cron: str | None = None,
             every: float | timedelta | None = None, tz: str | None = None) -> Schedule:
    """Declare a schedule in a task module: nodes that load the module publish it at
    start-up (an unchanged schedule stays as it is, paused or not). Checked here."""
    schedule = Schedule(name, key, task, timing(cron, every, tz))
    existing = DECLARED.get(name)
    if existing is not None and existing != schedule:
        raise InvalidSchedule(f"schedule {name!r} is declared twice, differently")
    DECLARED[name] = schedule
    return schedule
