"""Fire due retries: re-dispatch each to its key's current owner, on time, without polling.

The loop sleeps until the earliest due time, or until a node announces a new
retry on the wake channel; due times are Redis' clock, read with Redis' clock.
Claimed entries get a lease (their due time moves to the lease's end), so a
coordinator that dies mid-dispatch only delays them; the node's accept removes an
entry in the same step that makes it live again.

A retry is leased again while no node can be reached (it waits for them), but not
forever while nodes answer and keep refusing it for a reason that should pass
(``OVERLOADED``, ``INTERNAL``, ownership that keeps moving): after ``MAX_CLAIMS``
leases it goes to the DLQ as ``undeliverable``, to be replayed once the cause is
fixed. A refusal for good (an unknown task name, an envelope a node refuses) sends
it there at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from ringpool.client.router import Router
from ringpool.core.protocol import REFUSALS, code_name
from ringpool.errors import ClusterUnavailable, NoNodesAvailable, RingpoolError
from ringpool.store.store import DueTask, StateStore
from ringpool.v1 import node_pb2 as pb
from ringpool_coordinator.events import CoordinatorEvents

log = logging.getLogger(__name__)
IDLE_WAIT_S = 5.0
LEASE_S = 10.0
MAX_CLAIMS = 30  # leases of a retry that nodes keep refusing for a passing reason
# Refusals that are no fault of the task: it waits, leased again, until they pass.
NOT_THE_TASKS_FAULT = frozenset({pb.NOT_REDELIVERABLE, pb.PERMISSION_DENIED})


class RetryFirer:
    def __init__(self, store: StateStore, router: Router, batch: int = 500,
                 events: CoordinatorEvents | None = None) -> None:
        self.store = store
        self.router = router
        self.batch = batch
        self.events = events or CoordinatorEvents()
        self._wake = asyncio.Event()

    async def run(self) -> None:
        listener = asyncio.create_task(self._listen())
        try:
            while True:
                # Clear before reading the retry set, not after: a node's wake that lands
                # between the read and the wait must cut the wait short, not be wiped out.
                self._wake.clear()
                try:
                    due_in = await self.store.due_in()
                    if due_in is not None and due_in <= 0:
                        await self.fire_due()
                        continue  # more may be due right now
                except Exception as exc:  # Redis away: the leases keep every retry safe
                    log.warning("retry firing failed (%s); trying again shortly", exc)
                    await asyncio.sleep(0.5)
                    continue
                wait = IDLE_WAIT_S if due_in is None else due_in
                if wait > 0:
                    with contextlib.suppress(TimeoutError):
                        # asyncio.timeout, not wait_for: in 3.11 wait_for can swallow the
                        # cancellation that ends a term, and a demoted leader would fire on.
                        async with asyncio.timeout(min(wait, IDLE_WAIT_S)):
                            await self._wake.wait()
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener

    async def fire_due(self) -> int:
        """Re-dispatch one batch of due retries; how many were claimed."""
        claimed = await self.store.claim_due(LEASE_S, self.batch)
        due = claimed.tasks
        if not due:
            return 0
        self.events.retries_claimed(max(0.0, claimed.late_s))
        envelopes = []
        for item in due:
            envelope = pb.TaskEnvelope()
            envelope.CopyFrom(item.envelope)
            envelope.source = pb.SOURCE_RETRY
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
                log.error("retry of %s refused: %s; give the coordinator the nodes' "
                          "--operator-token", item.task_id, ack.message)
            elif (
                ack.code in REFUSALS
                and ack.code not in NOT_THE_TASKS_FAULT
                and await self.store.bury(item.task_id, code_name(ack.code), ack.message)
            ):
                buried += 1
                log.warning("retry of %s refused (%s); moved to the DLQ", item.task_id, ack.message)
        if unsent:
            log.warning("could not re-dispatch %d retries; they fire again in %.0fs", unsent,
                        LEASE_S)
        self.events.retries_fired(fired)
        self.events.retries_buried(buried)
        return len(due)

    async def _bury_worn_out(self, item: DueTask, error: RingpoolError) -> bool:
        """Dead-letter a retry that nodes answered and kept refusing for a passing reason,
        once it was leased ``MAX_CLAIMS`` times; one no node could be reached for waits."""
        if isinstance(error, ClusterUnavailable | NoNodesAvailable) or item.claims < MAX_CLAIMS:
            return False
        if not await self.store.bury(item.task_id, type(error).__name__,
                                     f"refused on {item.claims} re-dispatches: {error}",
                                     "undeliverable"):
            return False
        log.warning("retry of %s refused %d times (%s); moved to the DLQ", item.task_id,
                    item.claims, error)
        return True

    async def _listen(self) -> None:
        async def wake() -> None:
            self._wake.set()

        await self.store.watch_retry_wakes(wake)
