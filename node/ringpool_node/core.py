"""The node's decisions for a batch: validate, check ownership, admit, accept durably, run.

Nothing is written to Redis for a task that is refused here. Admission reserves its
room before the durable accept, so batches accepted at once never overrun the node's
pending limit; a client's far-ahead ring version syncs our ring at most once per
``RING_SYNC_INTERVAL_S``. A task accepted with an eta still ahead is only recorded
(SCHEDULED): the coordinator fires it to its key's owner at its time. Cancels of tasks
in flight here stop their runs.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from typing import Any, NamedTuple

from ringpool.core import codec, telemetry
from ringpool.core.envelope import Limits, validate
from ringpool.core.membership import Membership
from ringpool.core.protocol import TaskState, ack_code_for
from ringpool.core.ring import Ring, RouteCache
from ringpool.errors import DispatchError
from ringpool.pool import Pools
from ringpool.store.store import AcceptCode, AcceptResult, StateStore
from ringpool.task import DEFAULT_GROUP, TaskDefinition, tasks_of_group
from ringpool.v1 import node_pb2 as pb
from ringpool_node.batching import GroupCommit
from ringpool_node.events import NodeEvents
from ringpool_node.execution import DEFAULT_ORDER_LEASE_TTL_S, Execution
from ringpool_node.streams import ClientStream

log = logging.getLogger(__name__)

RECONCILE_INTERVAL_S = 5.0
RING_SYNC_INTERVAL_S = 1.0


class Call(NamedTuple):
    definition: TaskDefinition[Any, Any]
    args: list[Any]
    kwargs: dict[str, Any]


class NotServing(Exception):
    """The node is draining or has no live registration: the client must re-route."""


@dataclass(frozen=True)
class NodeSnapshot:
    """The node's state at one moment, for a scrape or a Status call."""

    node_id: str
    group: str
    ring_version: int
    ring_members: int
    group_members: dict[str, int]  # members of each task group on the ring
    draining: bool
    in_flight: int  # accepted tasks not yet finished and recorded
    pools: dict[str, Any]  # Pools.stats()
    rate_waiting: dict[str, int]  # starts waiting for a rate-limit token, by task name
    zookeeper_state: str  # CONNECTED, SUSPENDED or LOST (kazoo's names)
    ring_stale_s: float  # seconds without ZooKeeper, serving on the last ring

    @property
    def queued(self) -> int:
        return int(self.pools.get("queued", 0))

    @property
    def running(self) -> int:
        return int(self.pools.get("running", 0))


class Node:
    def __init__(
        self,
        node_id: str,
        store: StateStore,
        membership: Membership,
        pools: Pools,
        limits: Limits,
        max_pending: int = 20_000,
        max_crash_recoveries: int = 3,
        max_stream_pending: int = 10_000,
        events: NodeEvents | None = None,
        group: str = DEFAULT_GROUP,
        order_lease_ttl_s: float = DEFAULT_ORDER_LEASE_TTL_S,
    ) -> None:
        self.max_crash_recoveries = max_crash_recoveries
        self.node_id = node_id
        self.group = group
        # The tasks this node serves: those registered for its group.
        self.tasks: dict[str, TaskDefinition[Any, Any]] = tasks_of_group(group)
        self.store = store
        self.membership = membership
        self.pools = pools
        self.limits = limits
        self.max_pending = max_pending
        self.max_stream_pending = max_stream_pending  # per client stream, see ClientStream
        self.epoch: int | None = None
        self.last_epoch: int | None = None  # of this process's latest registration
        self.draining = False
        self._reserved = 0  # admitted by batches whose durable accept is in progress
        self._ring_sync: asyncio.Future[Any] | None = None
        self._ring_synced_at = -math.inf
        self.events = events or NodeEvents()
        self.execution = Execution(node_id, store, pools, self.events, order_lease_ttl_s)
        self._routes = RouteCache()
        self._accepts: GroupCommit[pb.TaskEnvelope, tuple[AcceptResult, int]] = GroupCommit(
            self._flush_accepts
        )

    @property
    def serving(self) -> bool:
        return self.epoch is not None and not self.draining

    def registered(self, epoch: int | None) -> None:
        """The registration's epoch changed (None: lost, or out of the ring)."""
        self.epoch = epoch
        if epoch is not None:
            self.last_epoch = epoch

    async def _ring_for(self, envelopes: Any) -> Ring:
        """Our ring, synced with ZooKeeper first when a client has seen a newer one.

        One sync at a time, and none within ``RING_SYNC_INTERVAL_S`` of the last: a
        client claiming a far-ahead version cannot make every batch read ZooKeeper
        (our watch keeps the ring current anyway).
        """
        ring = self.membership.ring
        newest = max((e.ring_version for e in envelopes), default=0)
        if newest <= ring.version:
            return ring
        now = asyncio.get_running_loop().time()
        if self._ring_sync is None or (
            self._ring_sync.done() and now - self._ring_synced_at >= RING_SYNC_INTERVAL_S
        ):
            self._ring_synced_at = now
            self._ring_sync = asyncio.ensure_future(asyncio.to_thread(self.membership.refresh))
        sync = self._ring_sync
        if not sync.done():
            try:
                await asyncio.shield(sync)
            except Exception as exc:  # ZooKeeper unreachable: decide on the ring we have
                log.warning("could not sync the ring with ZooKeeper: %s", exc)
        return self.membership.ring

    async def submit(
        self, envelopes: list[pb.TaskEnvelope], stream: ClientStream | None,
        operator: bool = True,
    ) -> list[pb.Ack]:
        """Acks for a batch; ``operator`` says whether the caller may send retries, replays
        and due delayed tasks (else they are refused with PERMISSION_DENIED)."""
        started_ns = time.time_ns()
        acks = await self._decide(envelopes, stream, operator)
        self.events.answered(envelopes, acks)
        telemetry.record_accepts(envelopes, acks, self.node_id, started_ns)
        return acks

    def results_soon(
        self, envelopes: list[pb.TaskEnvelope], acks: list[pb.Ack], within_s: float
    ) -> bool:
        """True when every task was accepted and its kind typically finishes (recorded)
        within ``within_s``."""
        typical = self.execution.typical_s
        return all(ack.code == pb.ACCEPTED and ack.state == pb.QUEUED for ack in acks) and all(
            typical.get(e.name, math.inf) < within_s for e in envelopes)

    async def _decide(
        self, envelopes: list[pb.TaskEnvelope], stream: ClientStream | None, operator: bool
    ) -> list[pb.Ack]:
        if not self.serving:
            return [self._ack(e, pb.DRAINING, "node is not serving") for e in envelopes]
        if len(envelopes) > self.limits.max_batch_tasks:
            message = f"batch of {len(envelopes)} tasks; the limit is {self.limits.max_batch_tasks}"
            return [self._ack(e, pb.INVALID_ARGUMENT, message) for e in envelopes]
        ring = await self._ring_for(envelopes)
        acks: list[pb.Ack | None] = [None] * len(envelopes)
        admitted: list[tuple[int, Call]] = []
        room = self.max_pending - self.execution.pending - self._reserved
        stream_room = stream.room(self.max_stream_pending) if stream is not None else room
        for index, envelope in enumerate(envelopes):
            checked = self._check(envelope, ring, operator)
            if isinstance(checked, pb.Ack):
                acks[index] = checked
            elif len(admitted) >= room:
                acks[index] = self._ack(envelope, pb.OVERLOADED, "node is at capacity",
                                        retry_after_s=0.05)
            elif len(admitted) >= stream_room:
                acks[index] = self._ack(
                    envelope, pb.OVERLOADED,
                    f"over {self.max_stream_pending} pending tasks on this stream",
                    retry_after_s=0.1)
            else:
                admitted.append((index, checked))
        # Reserved before the first await, released once counted as pending (or refused).
        self._reserved += len(admitted)
        if stream is not None:
            stream.reserved += len(admitted)
        try:
            if admitted:
                await self._accept_admitted(envelopes, admitted, acks, stream)
        finally:
            self._reserved -= len(admitted)
            if stream is not None:
                stream.reserved -= len(admitted)
        return [ack for ack in acks if ack is not None]

    async def _accept_admitted(
        self,
        envelopes: list[pb.TaskEnvelope],
        admitted: list[tuple[int, Call]],
        acks: list[pb.Ack | None],
        stream: ClientStream | None,
    ) -> None:
        try:
            results = await self._accepts.call([envelopes[i] for i, _ in admitted])
        except NotServing:
            for index, _ in admitted:
                acks[index] = self._ack(envelopes[index], pb.DRAINING, "node is not serving")
            return
        except Exception as exc:
            log.warning("durable accept failed: %s", exc)
            for index, _ in admitted:
                acks[index] = self._ack(envelopes[index], pb.INTERNAL,
                                        f"state store unavailable: {exc}", retry_after_s=0.2)
            return
        for (index, call), (result, epoch) in zip(admitted, results, strict=True):
            acks[index] = self._after_accept(envelopes[index], call, result, epoch, stream)

    def _check(self, envelope: pb.TaskEnvelope, ring: Ring, operator: bool) -> pb.Ack | Call:
        """The refusal for this envelope, or what to call when it is ours and valid."""
        try:
            validate(envelope, self.limits, decode_payload=False)
            args, kwargs = codec.decode_call(envelope.payload)
        except DispatchError as exc:
            return self._ack(envelope, ack_code_for(exc), str(exc))
        if envelope.source != pb.SOURCE_CLIENT and not operator:
            return self._ack(envelope, pb.PERMISSION_DENIED,
                             "retries, replays and due delayed tasks need the operator token")
        if envelope.group != self.group:
            # Routed on a ring where this node was in another group: the sender's is stale.
            return self._ack(envelope, pb.WRONG_OWNER,
                             f"{self.node_id} serves group {self.group!r}, not {envelope.group!r}",
                             ring_version=ring.version)
        definition = self.tasks.get(envelope.name)
        if definition is None:
            in_group = f" in group {self.group!r}" if self.group else ""
            return self._ack(envelope, pb.UNKNOWN_TASK,
                             f"unknown task {envelope.name!r}{in_group}")
        members = ring.group(self.group)
        owner = self._routes.owner(members, envelope.key) if len(members) else None
        if owner != self.node_id:
            return self._ack(envelope, pb.WRONG_OWNER, f"owner at v{ring.version} is {owner}",
                             ring_version=ring.version)
        return Call(definition, args, kwargs)

    def _after_accept(
        self,
        envelope: pb.TaskEnvelope,
        call: Call,
        result: AcceptResult,
        epoch: int,
        stream: ClientStream | None,
    ) -> pb.Ack:
        state = result.state.wire
        if result.code is AcceptCode.ACCEPTED and result.state is TaskState.SCHEDULED:
            return self._ack(envelope, pb.ACCEPTED, state=state)
        if result.code is AcceptCode.ACCEPTED:
            self.execution.start(envelope, call.definition, call.args, call.kwargs, epoch, stream)
            return self._ack(envelope, pb.ACCEPTED, state=pb.QUEUED)
        if result.code is AcceptCode.DUPLICATE:
            return self._ack(envelope, pb.DUPLICATE, original_task_id=result.task_id, state=state)
        if result.code is AcceptCode.ID_TAKEN:
            return self._ack(envelope, pb.ID_TAKEN,
                             f"task id {envelope.task_id} is another task's", state=state)
        if result.code is AcceptCode.UNAVAILABLE:
            return self._ack(envelope, pb.INTERNAL, f"state store unavailable: {result.message}",
                             retry_after_s=0.2)
        return self._ack(envelope, pb.NOT_REDELIVERABLE, "task is no longer waiting", state=state)

    async def _flush_accepts(
        self, envelopes: list[pb.TaskEnvelope]
    ) -> list[tuple[AcceptResult, int]]:
        epoch = self.epoch
        if epoch is None or self.draining:
            raise NotServing()
        results = await self.store.accept(self.node_id, epoch, envelopes)
        if self.epoch != epoch:
            # The session was lost while this was in flight: these entries are stale now.
            await self.reclaim_stale()
            raise NotServing()
        return [(result, epoch) for result in results]

    async def reclaim(self) -> None:
        """At start-up (the id claimed, before registering): hand the tasks an earlier,
        crashed process of ours held to the retry set. This counts as a crash recovery of
        each: one recovered more than ``max_crash_recoveries`` times goes to the DLQ."""
        await self._reclaim(None, self.max_crash_recoveries)

    async def reclaim_stale(self) -> None:
        """After registering again (a lost session, a Redis cut-off): hand the tasks of our
        earlier epochs to the retry set, not counted as crashes (this process lived on).
        Only older epochs: a later registration's tasks are never ours to take."""
        epoch = self.epoch
        if epoch is None:
            return
        try:
            await self._reclaim(epoch - 1, 0)
        except Exception as exc:  # Redis away: the next reconciliation sweep tries again
            log.warning("could not reclaim tasks of an earlier epoch: %s", exc)

    async def _reclaim(self, max_epoch: int | None, max_recoveries: int) -> None:
        recovery = await self.store.recover(self.node_id, max_epoch, max_recoveries)
        self.events.reclaimed(recovery)
        if recovery.recovered or recovery.poisoned:
            log.info("reclaimed %d tasks from an earlier life (%d poisoned)",
                     recovery.recovered, recovery.poisoned)

    def _ack(self, envelope: pb.TaskEnvelope, code: int, message: str = "", **fields: Any) -> pb.Ack:
        fields.setdefault("ring_version", self.membership.ring.version)
        return pb.Ack(task_id=envelope.task_id, code=code, message=message,  # type: ignore[arg-type]
                      node_id=self.node_id, **fields)

    def snapshot(self) -> NodeSnapshot:
        ring = self.membership.ring
        pools = self.pools.stats()
        # Ordered tasks waiting for their key's lease or turn are queued too.
        waiting = self.execution.leases.waiting
        pools["queued"] += waiting
        pools["ordered_waiting"] += waiting
        return NodeSnapshot(node_id=self.node_id, group=self.group, ring_version=ring.version,
                            ring_members=len(ring),
                            group_members={name: len(r) for name, r in ring.groups.items()},
                            draining=self.draining,
                            in_flight=self.execution.pending, pools=pools,
                            rate_waiting=self.execution.rates.waiting,
                            zookeeper_state=self.membership.state,
                            ring_stale_s=self.membership.stale_s)

    async def cancel_forever(self) -> None:
        """Stop the runs of tasks cancelled while in flight here, as the cancels come.

        A cancel announced while the subscription was down is caught by the
        reconciliation sweep instead (the task is no longer in flight for us).
        """
        async def cancelled(task_id: str) -> None:
            self.execution.stop(task_id, cancelled=True)

        await self.store.watch_cancels(self.node_id, cancelled)

    async def reconcile_forever(self, interval_s: float = RECONCILE_INTERVAL_S) -> None:
        """Hand back tasks Redis holds in flight for us that we are not running, and stop
        the runs of tasks it no longer holds in flight for us.

        An accept whose reply was lost (Redis restarting mid-call) leaves such a task:
        durably accepted, acknowledged as a duplicate when resent, yet never started.
        One seen orphaned on two sweeps in a row goes to the retry set and runs again.
        Tasks of an earlier epoch still here (their reclaim failed) are reclaimed.
        A run whose task left our in-flight hash (cancelled, and the cancel not heard)
        and is still here on the next sweep is stopped.
        """
        suspects: set[str] = set()
        strays: set[str] = set()
        while True:
            await asyncio.sleep(interval_s)
            epoch = self.epoch
            if epoch is None or self.draining:
                continue
            try:
                inflight = await self.store.inflight(self.node_id)
                if self.epoch != epoch:
                    continue  # registered again meanwhile: look on the next sweep
                if any(owner_epoch < epoch for owner_epoch in inflight.values()):
                    await self.reclaim_stale()
                orphans = {
                    task_id for task_id, owner_epoch in inflight.items()
                    if owner_epoch == epoch and task_id not in self.execution.active
                }
                confirmed, suspects = orphans & suspects, orphans - suspects
                if confirmed:
                    handed = await self.store.hand_back(self.node_id, confirmed, epoch)
                    log.warning("handed back %d accepted tasks this node was not running", handed)
                gone = {task_id for task_id in self.execution.active
                        if inflight.get(task_id) != epoch}
                lost, strays = gone & strays, gone - strays
                for task_id in lost:
                    if self.execution.stop(task_id, cancelled=False):
                        log.warning("stopped task %s: it is no longer in flight here", task_id)
            except Exception as exc:
                log.warning("in-flight reconciliation failed: %s", exc)

    async def drain(self, timeout: float) -> None:
        """Stop accepting, finish what we can within ``timeout``, hand back the rest.

        Queued work is withdrawn (from the pools, and starts waiting under a rate limit
        or for their key's turn; those waiting for a lease another node holds at once)
        first so it cannot start after it was handed back; handed-back tasks go to the
        retry set, due now, without using an attempt, and the coordinator re-dispatches
        them. An ordered key's lease is kept while its tasks here run, released as the
        last one finishes or is handed back, so the key's new owner starts it after them.
        """
        self.draining = True
        self.execution.leases.drain()
        before = self.execution.pending
        await self.execution.wait_idle(timeout)
        self.execution.withdraw()
        await self.pools.release(0.0)
        handed_back = 0
        if self.last_epoch is not None:
            # Up to our latest epoch (the session may be gone by now): never a later
            # registration's tasks.
            recovery = await self.store.recover(self.node_id, self.last_epoch, max_recoveries=0)
            handed_back = recovery.recovered
        await self.execution.leases.close()
        finished = before - self.execution.pending
        log.info("drained: %d finished, %d handed back", finished, handed_back)
