"""Recover the in-flight tasks of nodes that left the ring without draining.

A node is dead for us when it has in-flight tasks, no member znode, no draining
znode (a draining node is finishing its own tasks) and no restarting znode (a new
process of that id reclaims them itself). Its tasks move to the retry set, due now,
and the retry firer sends them to their keys' current owners. A task recovered
more than ``max_crash_recoveries`` times is poison and goes to the DLQ instead;
a node with a cut-off znode left because it cannot reach Redis, and recovering its
tasks does not count against that.

Fenced: the members znode's ``pzxid``, read with the children that showed the node
gone, bounds the owner epochs recovered. A registration after that read has a
larger epoch (its znode's creation zxid), so a node coming back between the check
and the recovery never has its new tasks taken while it runs them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import NamedTuple

from kazoo.client import KazooClient

from ringpool.core.membership import Membership
from ringpool.core.naming import Names
from ringpool.store.store import StateStore
from ringpool_coordinator.events import CoordinatorEvents

log = logging.getLogger(__name__)
SWEEP_INTERVAL_S = 5.0


class Dead(NamedTuple):
    """A node found dead: recover its entries of owner epochs up to ``max_epoch``."""

    node_id: str
    max_epoch: int
    crashed: bool  # False for a node that left because it could not reach Redis


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
                async with asyncio.timeout(SWEEP_INTERVAL_S):  # not wait_for: see woken.py
                    await self._wake.wait()

    def _dead(self, node_ids: set[str]) -> list[Dead]:
        names = self.names
        # The markers are read after the members: a drain or a restart creates its marker
        # before its member znode goes, so no node is ever seen with neither.
        members, stat = self.zk.get_children(names.members, include_data=True)
        dead = []
        for node_id in node_ids - set(members):
            if (self.zk.exists(f"{names.draining}/{node_id}")
                    or self.zk.exists(f"{names.restarting}/{node_id}")):
                continue
            cut_off = self.zk.exists(f"{names.cut_off}/{node_id}") is not None
            dead.append(Dead(node_id, stat.pzxid, crashed=not cut_off))
        return dead

    async def sweep(self) -> None:
        candidates = await self.store.inflight_nodes()
        if not candidates:
            return
        for node_id, max_epoch, crashed in await asyncio.to_thread(self._dead, candidates):
            result = await self.store.recover(
                node_id, max_epoch, self.max_crash_recoveries if crashed else 0)
            self.events.dead_node_recovered(result)
            if result.recovered or result.poisoned:
                log.info("recovered %d tasks of %s node %s (%d poisoned)", result.recovered,
                         "dead" if crashed else "cut-off", node_id, result.poisoned)
