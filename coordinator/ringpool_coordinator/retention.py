"""DLQ retention: the leader removes dead letters older than the configured age.

Never silent: every removal is logged with its count and counted in
``ringpool_dlq_expired_total``. A retention of 0 keeps dead letters forever. Ages are
measured with Redis' clock, the one that stamped the dead letters.
"""

from __future__ import annotations

import asyncio
import logging

from ringpool.store.store import StateStore
from ringpool_coordinator.events import CoordinatorEvents

log = logging.getLogger(__name__)
BATCH = 500


class DlqRetention:
    def __init__(self, store: StateStore, retention_s: float,
                 events: CoordinatorEvents | None = None) -> None:
        self.store = store
        self.retention_s = retention_s
        self.events = events or CoordinatorEvents()

    @property
    def interval_s(self) -> float:
        """Check ten times per retention period, at most once a minute, at least once a second."""
        return min(60.0, max(1.0, self.retention_s / 10))

    async def run(self) -> None:
        if self.retention_s <= 0:
            return
        while True:
            try:
                await self.expire()
            except Exception as exc:  # Redis away: the next round catches up
                log.warning("DLQ retention check failed: %s", exc)
            await asyncio.sleep(self.interval_s)

    async def expire(self) -> int:
        """Remove every dead letter older than the retention; how many went."""
        cutoff = await self.store.now() - self.retention_s
        removed = 0
        async for page in self.store.dlq_pages(until=cutoff, page_size=BATCH):
            removed += await self.store.dlq_purge([task_id for task_id, _ in page])
        if removed:
            self.events.dead_letters_expired(removed)
            log.warning("removed %d dead letters older than the DLQ retention of %.0fs",
                        removed, self.retention_s)
        return removed
