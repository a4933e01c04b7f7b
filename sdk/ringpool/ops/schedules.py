"""Periodic schedules as operators handle them, shared by ``taskctl`` and the dashboard:
add one from typed text (checked as a client's ``schedule()`` checks it), pause, resume,
remove. Listing is the store's (``StateStore.schedules.all``)."""

from __future__ import annotations

import json
from typing import Any

from ringpool.client.schedules import publish
from ringpool.core.ring import Ring
from ringpool.core.schedule import Schedule, timing
from ringpool.errors import InvalidSchedule, ScheduleNotFound
from ringpool.store.schedules import PutResult, StoredSchedule
from ringpool.store.store import StateStore
from ringpool.task import Task

ORIGIN = "operator"


def arguments(args_json: str, kwargs_json: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The task's arguments from JSON text: a list and an object ('' for none)."""
    try:
        args = json.loads(args_json) if args_json.strip() else []
        kwargs = json.loads(kwargs_json) if kwargs_json.strip() else {}
    except json.JSONDecodeError as exc:
        raise InvalidSchedule(f"arguments must be JSON: {exc}") from None
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise InvalidSchedule("args must be a JSON list and kwargs a JSON object")
    return tuple(args), kwargs


async def add(store: StateStore, ring: Ring, name: str, task_name: str, key: str,
              args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None,
              cron: str | None = None, every_s: float | None = None, tz: str | None = None,
              ) -> tuple[PutResult, StoredSchedule]:
    """Create or replace schedule ``name``; what happened, and the schedule as stored."""
    schedule = Schedule(name, key, Task(task_name, args, kwargs or {}), timing(cron, every_s, tz))
    return await publish(store, ring, schedule, ORIGIN)


async def get(store: StateStore, name: str) -> StoredSchedule:
    schedule = await store.schedules.get(name)
    if schedule is None:
        raise ScheduleNotFound(f"no schedule named {name!r}")
    return schedule


async def remove(store: StateStore, name: str) -> None:
    if not await store.schedules.remove(name):
        raise ScheduleNotFound(f"no schedule named {name!r}")


async def pause(store: StateStore, name: str) -> StoredSchedule:
    """Pause a schedule (already paused: nothing changes); it as stored now."""
    if not await store.schedules.pause(name):
        raise ScheduleNotFound(f"no schedule named {name!r}")
    return await get(store, name)


async def resume(store: StateStore, name: str) -> StoredSchedule:
    """Resume a paused schedule from its next tick after now (ticks missed while paused
    are not caught up; a running one is left as it is); it as stored now."""
    schedule = await get(store, name)
    if schedule.paused and not await store.schedules.resume(schedule):
        raise ScheduleNotFound(f"no schedule named {name!r}")
    return await get(store, name)
