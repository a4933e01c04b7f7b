"""Publishing a schedule as a client does: checked like a dispatch of its task, then stored.

``AsyncCluster.schedule``, ``taskctl schedule add`` and the dashboard all publish
through ``publish``, so a schedule is refused the same way everywhere.
"""

from __future__ import annotations

from ringpool.core.envelope import DEFAULT_LIMITS, Limits
from ringpool.core.ring import Ring
from ringpool.core.schedule import Schedule
from ringpool.errors import ScheduleNotFound, UnknownTask
from ringpool.store.schedules import PutResult, StoredSchedule
from ringpool.store.store import StateStore


async def publish(store: StateStore, ring: Ring, schedule: Schedule, origin: str,
                  limits: Limits = DEFAULT_LIMITS) -> tuple[PutResult, StoredSchedule]:
    """Create or replace ``schedule`` (unchanged: left as it is); what happened, and the
    schedule as stored. Raises what a dispatch of its task would (UnknownTask when no node
    serves the task's name, InvalidTask, InvalidKey)."""
    template = schedule.template(limits)
    names = ring.task_names
    if names is not None and schedule.task.name not in names:
        raise UnknownTask(f"no node serves a task named {schedule.task.name!r}")
    result = await store.schedules.put(schedule.name, schedule.key, template, schedule.timing,
                                       origin)
    stored = await store.schedules.get(schedule.name)
    if stored is None:
        raise ScheduleNotFound(f"schedule {schedule.name!r} was removed as it was written")
    return result, stored
