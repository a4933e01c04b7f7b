"""Recover the in-flight tasks of nodes that left the ring without draining.

A node is dead for us when it has in-flight tasks, no member znode and no
draining znode (a draining node is finishing its own tasks). Its tasks move to
the retry set, due now, and the retry firer sends them to their keys' current
owners. A task recovered more than ``max_crash_recoveries`` times is poison and
goes to the DLQ instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from kazoo.client import KazooClient

from ringpool.core.membership import Membership
from ringpool.core.naming import Names
from ringpool.store.store import StateStore
from ringpool_coordinator.events import CoordinatorEvents

log = logging.getLogger(__name__)
SWEEP_INTERVAL_S = 5.0


class Recoverer:
    def __init__(
        self, zk: KazooClient, store: StateStore, membership: Membership,
        max_crash_recoveries: int = 3, events: CoordinatorEvents | None = None,
    ) -> None:
        self.zk = zk
        self.store = store
        self.names: Names = membership.names
        self.membership = membership
        self.max_crash_recoveries = max_crash_recoveries
        self.events = events or CoordinatorEvents()
        self._wake = asyncio.Event()

    def ring_changed(self) -> None:
        """Thread-safe nudge: the ring changed, a member may have died."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception as exc:  # Redis or ZooKeeper away: the next sweep catches up
                log.warning("recovery sweep failed (%s)", exc)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), SWEEP_INTERVAL_S)

    def _dead(self, node_ids: set[str]) -> list[str]:
        dead = []
        for node_id in node_ids:
            alive = self.zk.exists(self.names.member(node_id))
            draining = self.zk.exists(f"{self.names.draining}/{node_id}")
            if not alive and not draining:
                dead.append(node_id)
        return dead

    async def sweep(self) -> None:
        candidates = await self.store.inflight_nodes()
        if not candidates:
            return
        for node_id in await asyncio.to_thread(self._dead, candidates):
            result = await self.store.recover(node_id, None, self.max_crash_recoveries)
            self.events.dead_node_recovered(result)
            if result.recovered or result.poisoned:
                log.info("recovered %d tasks of dead node %s (%d poisoned)",
                         result.recovered, node_id, result.poisoned)
