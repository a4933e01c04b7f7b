"""Fire due tasks of a waiting set to their keys' current owners, on time, without polling.

One ``DueFirer`` fires due retries (the retry set), another delayed tasks and schedule
ticks (the scheduled set): the same loop. It sleeps until the earliest due time, or
until a new entry is announced on the set's wake channel; due times are Redis' clock,
read with Redis' clock. Claimed entries get a lease (their due time moves to the
lease's end), so a coordinator that dies mid-dispatch only delays them; the node's
accept removes an entry in the same step that makes it live again, so a task is never
fired twice.

A due task is leased again while no node can be reached (it waits for them), but not
forever while nodes answer and keep refusing it for a reason that should pass
(``OVERLOADED``, ``INTERNAL``, ownership that keeps moving): after ``MAX_CLAIMS``
leases it goes to the DLQ as ``undeliverable``, to be replayed once the cause is
fixed. A refusal for good (an unknown task name, an envelope a node refuses) sends
it there at once.
"""

from __future__ import annotations

import functools
import logging

from ringpool.client.router import Router
from ringpool.core.protocol import REFUSALS, code_name
from ringpool.errors import ClusterUnavailable, NoNodesAvailable, RingpoolError
from ringpool.store.store import DueTask, StateStore, Waiting
from ringpool.v1 import node_pb2 as pb
from ringpool_coordinator.events import CoordinatorEvents
from ringpool_coordinator.woken import run_woken

log = logging.getLogger(__name__)
LEASE_S = 10.0
MAX_CLAIMS = 30  # leases of a due task that nodes keep refusing for a passing reason
# Refusals that are no fault of the task: it waits, leased again, until they pass.
NOT_THE_TASKS_FAULT = frozenset({pb.NOT_REDELIVERABLE, pb.PERMISSION_DENIED})


class DueFirer:
    def __init__(self, store: StateStore, router: Router, waiting: Waiting = Waiting.RETRY,
                 batch: int = 500, events: CoordinatorEvents | None = None) -> None:
        self.store = store
        self.router = router
        self.waiting = waiting
        self.batch = batch
        self.events = events or CoordinatorEvents()

    async def run(self) -> None:
        await run_woken(self._step, functools.partial(self.store.watch_wakes, self.waiting),
                        f"firing due {self.waiting} tasks")

    async def _step(self) -> float | None:
        due_in = await self.store.due_in(self.waiting)
        if due_in is not None and due_in <= 0:
            await self.fire_due()
            return 0.0  # more may be due right now
        return due_in

    async def fire_due(self) -> int:
        """Dispatch one batch of due tasks; how many were claimed."""
        claimed = await self.store.claim_due(LEASE_S, self.batch, self.waiting)
        due = claimed.tasks
        if not due:
            return 0
        self.events.due_claimed(self.waiting, max(0.0, claimed.late_s))
        envelopes = []
        for item in due:
            envelope = pb.TaskEnvelope()
            envelope.CopyFrom(item.envelope)
            envelope.source = self.waiting.source
            envelope.attempt = item.attempt
            envelopes.append(envelope)
        acks = await self.router.send(envelopes)
        fired = buried = unsent = 0
        for item, ack in zip(due, acks, strict=True):
            if isinstance(ack, RingpoolError):
                if await self._bury_worn_out(item, ack):
                    buried += 1
                else:
                    unsent += 1
            elif ack.code == pb.ACCEPTED:
                fired += 1
            elif ack.code == pb.PERMISSION_DENIED:
                log.error("due %s task %s refused: %s; give the coordinator the nodes' "
                          "--operator-token", self.waiting, item.task_id, ack.message)
            elif (
                ack.code in REFUSALS
                and ack.code not in NOT_THE_TASKS_FAULT
                and await self.store.bury(item.task_id, code_name(ack.code), ack.message,
                                          waiting=self.waiting)
            ):
                buried += 1
                log.warning("due %s task %s refused (%s); moved to the DLQ", self.waiting,
                            item.task_id, ack.message)
        if unsent:
            log.warning("could not dispatch %d due %s tasks; they fire again in %.0fs", unsent,
                        self.waiting, LEASE_S)
        self.events.due_fired(self.waiting, fired)
        self.events.due_buried(self.waiting, buried)
        return len(due)

    async def _bury_worn_out(self, item: DueTask, error: RingpoolError) -> bool:
        """Dead-letter a due task that nodes answered and kept refusing for a passing
        reason, once it was leased ``MAX_CLAIMS`` times; one no node could be reached for
        waits."""
        if isinstance(error, ClusterUnavailable | NoNodesAvailable) or item.claims < MAX_CLAIMS:
            return False
        if not await self.store.bury(item.task_id, type(error).__name__,
                                     f"refused on {item.claims} dispatches: {error}",
                                     "undeliverable", self.waiting):
            return False
        log.warning("due %s task %s refused %d times (%s); moved to the DLQ", self.waiting,
                    item.task_id, item.claims, error)
        return True
