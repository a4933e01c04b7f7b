"""Claim the ticks of periodic schedules as they fall due, each exactly once.

The leader reads the schedules whose next tick has come, works out what to fire by
the catch-up policy (``ringpool.core.schedule``: after an outage, the latest missed
tick fires once and the earlier ones are counted as skipped), and claims each tick
in Redis. A tick is claimed only while its schedule still names it as its next, so
a second leader, or a pass that races a change, claims nothing. A claimed tick is a
task held SCHEDULED, due at the tick: the delay firer sends it to its key's owner.
Ticks are worked out on Redis' clock, the one the delay firer reads due times with
(and the one ``ScheduleStore`` works out a new or resumed schedule's next tick from).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from ringpool.store.store import StateStore
from ringpool_coordinator.events import CoordinatorEvents
from ringpool_coordinator.woken import run_woken

log = logging.getLogger(__name__)
BATCH = 100


class ScheduleTicker:
    """``clock`` tells the time (unix seconds), Redis' (``StateStore.now``) unless given:
    tests pass a fixed one."""

    def __init__(self, store: StateStore, events: CoordinatorEvents | None = None,
                 clock: Callable[[], Awaitable[float]] | None = None) -> None:
        self.store = store
        self.events = events or CoordinatorEvents()
        self.clock = clock or store.now

    async def run(self) -> None:
        await run_woken(self._step, self.store.schedules.watch_wakes, "ticking schedules")

    async def _step(self) -> float | None:
        await self.tick_due()
        next_at = await self.store.schedules.next_tick()
        return None if next_at is None else next_at - await self.clock()

    async def tick_due(self) -> int:
        """Claim the due tick of every schedule whose next tick has come; how many."""
        claimed = 0
        now = await self.clock()
        for schedule in await self.store.schedules.due(now, BATCH):
            assert schedule.next_at is not None
            catch_up = schedule.timing.catch_up(schedule.next_at, now)
            if not await self.store.schedules.claim_tick(schedule, schedule.next_at, catch_up):
                continue  # another leader claimed it, or the schedule changed meanwhile
            claimed += 1
            self.events.schedule_ticked(schedule.name, max(0.0, now - catch_up.fire_at),
                                        catch_up.skipped)
            if catch_up.skipped:
                log.warning("schedule %s missed %d ticks (no leader then); fired the latest once",
                            schedule.name, catch_up.skipped)
        return claimed
