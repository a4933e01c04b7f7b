"""Fire due retries: re-dispatch each to its key's current owner, on time, without polling.

The loop sleeps until the earliest due time, or until a node announces a new
retry on the wake channel. Claimed entries get a lease (their due time moves to
the lease's end), so a coordinator that dies mid-dispatch only delays them; the
node's accept removes an entry in the same step that makes it live again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from ringpool.client.router import Router
from ringpool.core.protocol import REFUSALS, code_name
from ringpool.errors import RingpoolError
from ringpool.store.store import StateStore
from ringpool.v1 import node_pb2 as pb
from ringpool_coordinator.events import CoordinatorEvents

log = logging.getLogger(__name__)
IDLE_WAIT_S = 5.0
LEASE_S = 10.0


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
                    next_due = await self.store.next_due()
                    if next_due is not None and next_due <= time.time():
                        await self.fire_due(next_due)
                        continue  # more may be due right now
                except Exception as exc:  # Redis away: the leases keep every retry safe
                    log.warning("retry firing failed (%s); trying again shortly", exc)
                    await asyncio.sleep(0.5)
                    continue
                wait = IDLE_WAIT_S if next_due is None else next_due - time.time()
                if wait > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), min(wait, IDLE_WAIT_S))
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener

    async def fire_due(self, oldest_due: float) -> int:
        """Re-dispatch one batch of due retries, the oldest due at ``oldest_due``; how many
        were claimed."""
        due = await self.store.claim_due(LEASE_S, self.batch)
        if not due:
            return 0
        self.events.retries_claimed(max(0.0, time.time() - oldest_due))
        envelopes = []
        for item in due:
            envelope = pb.TaskEnvelope()
            envelope.CopyFrom(item.envelope)
            envelope.source = pb.SOURCE_RETRY
            envelope.attempt = item.attempt
            envelopes.append(envelope)
        acks = await self.router.send(envelopes)
        unsent = sum(isinstance(ack, RingpoolError) for ack in acks)
        if unsent:
            log.warning("could not re-dispatch %d retries; they fire again in %.0fs", unsent,
                        LEASE_S)
        fired = buried = 0
        for envelope, ack in zip(envelopes, acks, strict=True):
            if isinstance(ack, RingpoolError):
                continue
            if ack.code == pb.ACCEPTED:
                fired += 1
            elif (
                ack.code in REFUSALS
                and ack.code != pb.NOT_REDELIVERABLE
                and await self.store.bury(envelope.task_id, code_name(ack.code), ack.message)
            ):
                buried += 1
                log.warning("retry of %s refused (%s); moved to the DLQ", envelope.task_id, ack.message)
        self.events.retries_fired(fired)
        self.events.retries_buried(buried)
        return len(due)

    async def _listen(self) -> None:
        async def wake() -> None:
            self._wake.set()

        await self.store.watch_retry_wakes(wake)
