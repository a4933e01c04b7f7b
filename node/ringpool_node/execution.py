"""Run accepted tasks on the pools and record how each ended.

An outcome becomes one transition (success, retry with backoff, or the DLQ).
Transitions queue up and one flusher writes each queue-full to Redis in a single
script call, fenced by the owner epoch. A RUNNING mark waits ``MARK_AFTER_S`` and
is written only for tasks still running then: most tasks finish sooner, and their
outcome records when they started. Only after an outcome is recorded is
the result pushed to the submitter's stream, or announced on the done channel
when no stream of its submitter is open. No coroutine or future per task: pool
futures call back into the queue directly.

An ``ordered`` task starts in its key's turn, one at a time per key, and only while the
node holds the key's cluster-wide handoff lease (``order_leases``); plain tasks go
straight to the pools.

A run that is stopped (``stop``: the task was cancelled, or Redis no longer holds it
in flight for this node) records nothing: its record already moved on. A cancelled
task's submitter hears CANCELLED on its stream when that is open.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ringpool.core.outcomes import INVALID_ARGUMENTS, check_arguments, conclude, retry_policy
from ringpool.errors import InvalidTask
from ringpool.pool import Job, Outcome, PoolClosed, PoolOverloaded, Pools
from ringpool.store.store import StateStore, Transition
from ringpool.task import RetryPolicy, TaskDefinition
from ringpool.v1 import node_pb2 as pb
from ringpool_node.events import NodeEvents
from ringpool_node.order_leases import OrderLeases
from ringpool_node.progress import ProgressRelay
from ringpool_node.ratelimit import Held, RateGate
from ringpool_node.streams import ClientStream

log = logging.getLogger(__name__)

MAX_FLUSH = 1000
MARK_AFTER_S = 0.05  # a task still running after this is marked RUNNING
DEFAULT_ORDER_LEASE_TTL_S = 10.0  # the ZooKeeper session timeout's default

@dataclass(slots=True)
class _Pending:
    """A transition waiting to be written, and what to do once it is."""

    epoch: int
    transition: Transition
    envelope: pb.TaskEnvelope | None = None  # None for a start mark: nothing follows
    result: pb.TaskResult | None = None
    stream: ClientStream | None = None


@dataclass(slots=True)
class _Lane:
    delay_s: float = 0.0  # how long an item waits before it is worth writing
    queue: list[_Pending] = field(default_factory=list)
    flusher: asyncio.Task[None] | None = None


class Execution:
    def __init__(self, node_id: str, store: StateStore, pools: Pools,
                 events: NodeEvents | None = None,
                 order_lease_ttl_s: float = DEFAULT_ORDER_LEASE_TTL_S) -> None:
        self.node_id = node_id
        self.events = events or NodeEvents()
        # The cluster config's retry defaults (live config), for tasks that declare none.
        self.default_retry: RetryPolicy | None = None
        self.store = store
        self.pools = pools
        # Tasks started here and not yet off our hands: by id (a redelivery can overlap a
        # stale run of the same id), and their total, kept as a count for the hot path.
        self.active: Counter[str] = Counter()
        self._jobs: dict[str, Job] = {}  # the latest run of each active task, to stop it
        self._stopped: dict[str, bool] = {}  # stopped runs -> whether it was a cancel
        self.pending = 0
        self.progress = ProgressRelay(node_id, store, self.active, self.events)
        self.rates = RateGate(store)
        # Ordered tasks start one at a time per key, under the key's cluster-wide lease.
        self.leases = OrderLeases(node_id, store, order_lease_ttl_s)
        # Two lanes, each with one flusher: RUNNING marks never hold up completions.
        self._lanes: dict[bool, _Lane] = {True: _Lane(delay_s=MARK_AFTER_S), False: _Lane()}
        self._waiting_room: set[asyncio.Task[None]] = set()
        # Typical time from start to recorded outcome, by task name (moving average).
        self.typical_s: dict[str, float] = {}
        # Attempts whose outcome was recorded, and their summed run time (Status RPC).
        self.runs_finished = 0
        self.run_seconds_total = 0.0
        self._idle = asyncio.Event()
        self._idle.set()

    # -- starting ------------------------------------------------------------------

    def start(
        self,
        envelope: pb.TaskEnvelope,
        definition: TaskDefinition[Any, Any],
        args: list[Any],
        kwargs: dict[str, Any],
        epoch: int,
        stream: ClientStream | None,
    ) -> None:
        """Run an accepted task; its arguments were decoded when it was validated."""
        self.pending += 1
        self.active[envelope.task_id] += 1
        self._idle.clear()
        if envelope.ordered:
            self.leases.enter(envelope.key, epoch)
        if stream is not None:
            stream.outstanding += 1
        try:
            check_arguments(definition, args, kwargs)
        except InvalidTask as exc:
            self._finished(envelope, definition, epoch, stream, time.time(),
                           Outcome.permanent(INVALID_ARGUMENTS, str(exc)))
            return
        self.events.queued(envelope.task_id)
        if self.rates.limit_of(definition) is None and not self.rates.holds(definition.name):
            self._launch(envelope, definition, args, kwargs, epoch, stream)
        else:  # waits, QUEUED, for its turn under the cluster-wide limit
            self.rates.admit(definition, self._held(
                self._launch, envelope, definition, args, kwargs, epoch, stream))

    def _launch(
        self, envelope: pb.TaskEnvelope, definition: TaskDefinition[Any, Any], args: list[Any],
        kwargs: dict[str, Any], epoch: int, stream: ClientStream | None,
    ) -> None:
        """Run a task now, or an ordered one in its key's turn under the key's lease."""
        if not envelope.ordered:
            self._run(envelope, definition, args, kwargs, epoch, stream)
            return
        self.leases.admit(envelope.key, self._held(
            self._run, envelope, definition, args, kwargs, epoch, stream))

    def _held(
        self, then: Callable[..., None], envelope: pb.TaskEnvelope,
        definition: TaskDefinition[Any, Any], args: list[Any], kwargs: dict[str, Any],
        epoch: int, stream: ClientStream | None,
    ) -> Held:
        """A start that waits (for a rate-limit token or its key's lease): ``then`` goes
        on with it; a drain withdraws it, a cancel stops it."""
        return Held(
            envelope.task_id,
            functools.partial(then, envelope, definition, args, kwargs, epoch, stream),
            functools.partial(self._withdrawn, envelope, stream),
            functools.partial(self._was_stopped, envelope, stream))

    def _run(
        self, envelope: pb.TaskEnvelope, definition: TaskDefinition[Any, Any], args: list[Any],
        kwargs: dict[str, Any], epoch: int, stream: ClientStream | None,
    ) -> None:
        """Hand a task to the pools: its timeout counts from now."""
        job = Job.for_envelope(envelope, definition, args, kwargs, self.node_id)
        job.context.on_progress = self.progress.hook(envelope.task_id, epoch, stream)
        self._jobs[envelope.task_id] = job
        started_at = time.time()
        # Marking RUNNING is informational: written late if at all, never retried.
        self._enqueue(_Pending(epoch, Transition.started(envelope.task_id, started_at)))
        done = functools.partial(self._on_done, envelope, definition, epoch, stream, started_at)
        try:
            self.pools.submit(job).add_done_callback(done)
        except PoolOverloaded as exc:
            waiter = asyncio.create_task(self._submit_when_room(job, exc.retry_after_s, done))
            self._waiting_room.add(waiter)
            waiter.add_done_callback(self._waiting_room.discard)
        except Exception as exc:
            # Never run. Every start ends through ``done``, or the task would stay pending
            # and its ordered key's next start would wait behind it for ever.
            refused: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
            if isinstance(exc, PoolClosed):  # the node is stopping: left for the hand-back
                refused.cancel()
            else:
                refused.set_exception(exc)
            done(refused)

    def _withdrawn(self, envelope: pb.TaskEnvelope, stream: ClientStream | None) -> None:
        # Never launched (a drain): it stays in flight until the hand-back moves it.
        self.events.handed_back(envelope.task_id)
        self._forget(envelope, stream)

    def withdraw(self) -> int:
        """Give up the starts still waiting under a rate limit or for their key's turn; how
        many there were."""
        return self.rates.withdraw() + self.leases.withdraw()

    async def _submit_when_room(
        self, job: Job, delay_s: float, done: Callable[[asyncio.Future[Outcome]], None]
    ) -> None:
        # Accepted already: wait for room rather than refuse.
        while True:
            await asyncio.sleep(delay_s)
            if job.context.cancelled.is_set():  # stopped while it waited
                stopped: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
                stopped.set_result(Outcome.cancelled_run(job))
                done(stopped)
                return
            try:
                self.pools.submit(job).add_done_callback(done)
                return
            except PoolOverloaded as exc:
                delay_s = exc.retry_after_s

    def stop(self, task_id: str, cancelled: bool) -> bool:
        """Stop the run of ``task_id`` here (queued, in the pools or for a rate-limit
        token: it never runs; running: see ``Pools.cancel``); nothing is recorded for it.
        False when it is not running here."""
        if task_id in self._stopped:
            return False
        job = self._jobs.get(task_id)
        if job is None:  # not launched yet: waiting for a rate-limit token or its key's turn
            held = self.rates.drop(task_id) or self.leases.drop(task_id)
            if held is None:
                return False
            self._stopped[task_id] = cancelled
            held.stopped()
            return True
        self._stopped[task_id] = cancelled
        if not self.pools.cancel(job):
            # Waiting for room in the pools (it is dropped when it gets some), or finished
            # and not yet recorded (that write is fenced off).
            log.info("task %s was not in the pools when it was stopped", task_id)
        return True

    def _on_done(
        self, envelope: pb.TaskEnvelope, definition: TaskDefinition[Any, Any], epoch: int,
        stream: ClientStream | None, started_at: float, future: asyncio.Future[Outcome],
    ) -> None:
        if envelope.ordered:
            self.leases.ran(envelope.key)
        if envelope.task_id in self._stopped:
            self._was_stopped(envelope, stream)
            return
        if future.cancelled():
            # Handed back by a drain: it stays in flight until the hand-back moves it.
            self.events.handed_back(envelope.task_id)
            self._forget(envelope, stream)
            return
        if future.exception() is not None:
            error = future.exception()
            outcome = Outcome(ok=False, error_type=type(error).__name__, error_message=str(error),
                              exception=error)
        else:
            outcome = future.result()
        self._finished(envelope, definition, epoch, stream, started_at, outcome)

    def _finished(
        self, envelope: pb.TaskEnvelope, definition: TaskDefinition[Any, Any], epoch: int,
        stream: ClientStream | None, started_at: float, outcome: Outcome,
    ) -> None:
        # Nobody to push to: announce the success on the done channel instead.
        publish = stream is None or not stream.open
        transition, result = self._conclude(envelope, definition, outcome, started_at, publish)
        self._enqueue(_Pending(epoch, transition, envelope, result, stream))

    def _conclude(
        self, envelope: pb.TaskEnvelope, definition: TaskDefinition[Any, Any], outcome: Outcome,
        started_at: float, publish: bool,
    ) -> tuple[Transition, pb.TaskResult | None]:
        """The transition for this outcome and, when it is final, the result to push."""
        task_id = envelope.task_id
        verdict = conclude(envelope, outcome, retry_policy(definition, self.default_retry))
        if verdict.op == "ok":
            ttl_s = envelope.result_ttl_s or definition.result_ttl_s or 0
            return Transition.succeeded(task_id, verdict.result, started_at, publish,
                                        ttl_s), pb.TaskResult(
                task_id=task_id, state=pb.SUCCEEDED, result=verdict.result, node_id=self.node_id,
                attempt=envelope.attempt,
            )
        if verdict.op == "retry":
            return Transition.retry(
                task_id, started_at, retry_in_s=verdict.retry_in_s,
                error_type=verdict.error_type, error_message=verdict.error_message,
                traceback=verdict.traceback,
            ), None
        return Transition.dead(
            task_id, started_at, dead_reason=verdict.dead_reason, error_type=verdict.error_type,
            error_message=verdict.error_message, traceback=verdict.traceback,
        ), pb.TaskResult(
            task_id=task_id, state=pb.FAILED, error_type=verdict.error_type,
            error_message=verdict.error_message, traceback=verdict.traceback,
            node_id=self.node_id, attempt=envelope.attempt,
        )

    # -- recording -------------------------------------------------------------------

    def _enqueue(self, item: _Pending) -> None:
        lane = self._lanes[item.envelope is None]
        lane.queue.append(item)
        if lane.flusher is None or lane.flusher.done():
            lane.flusher = asyncio.create_task(self._flush_all(lane))

    async def _flush_all(self, lane: _Lane) -> None:
        while lane.queue:
            if lane.delay_s:
                await asyncio.sleep(lane.delay_s)
                # Marks of tasks already off our hands are not worth a write.
                lane.queue = [item for item in lane.queue
                              if item.transition.task_id in self.active]
            batch, lane.queue = lane.queue[:MAX_FLUSH], lane.queue[MAX_FLUSH:]
            if not batch:
                return
            applied = await self._write(batch)
            self.events.recorded(
                (item.envelope.name, item.transition.op)
                for item, ok in zip(batch, applied, strict=True)
                if ok and item.envelope is not None
            )
            for item, ok in zip(batch, applied, strict=True):
                if item.envelope is not None:
                    await self._follow_up(item, ok)

    async def _write(self, batch: list[_Pending]) -> list[bool]:
        """Write a batch; False where fenced off. Rides out Redis outages for as long as
        they last: giving up would strand the tasks in flight on a live node."""
        delay = 0.05
        while True:
            try:
                return await self._write_once(batch)
            except Exception as exc:
                log.warning("recording %d transitions failed (%s); retrying in %.2fs",
                            len(batch), exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _write_once(self, batch: list[_Pending]) -> list[bool]:
        # A batch mixes epochs only across a re-registration; each epoch is fenced alone.
        results = [False] * len(batch)
        for epoch in {item.epoch for item in batch}:
            indexes = [i for i, item in enumerate(batch) if item.epoch == epoch]
            applied = await self.store.transition(
                self.node_id, epoch, [batch[i].transition for i in indexes]
            )
            for i, ok in zip(indexes, applied, strict=True):
                results[i] = ok
        return results

    async def _follow_up(self, item: _Pending, applied: bool) -> None:
        assert item.envelope is not None
        stream, result = item.stream, item.result
        if not applied:
            self.events.fenced(item.envelope.name)
            log.warning("task %s is no longer ours (recovered elsewhere, or this write was "
                        "already applied before a lost reply); dropping its %s",
                        item.envelope.task_id, item.transition.op)
        if applied:
            took = time.time() - item.transition.started_at
            self.runs_finished += 1
            self.run_seconds_total += took
            if result is not None:
                name = item.envelope.name
                self.typical_s[name] = self.typical_s.get(name, took) * 0.8 + took * 0.2
        pushed = stream is not None and applied and result is not None and stream.push_result(result)
        try:
            if stream is not None and not pushed and applied and result is not None \
                    and not item.transition.publish:
                # The stream went away (or is full) after we chose it: announce the result.
                await self.store.publish_done(item.envelope.task_id, item.envelope.reply_to)
        except Exception as exc:
            # The record holds the outcome: a waiting submitter finds it when it polls.
            log.warning("could not announce the outcome of %s: %s", item.envelope.task_id, exc)
        finally:
            self._forget(item.envelope, None if pushed else stream)

    def _was_stopped(self, envelope: pb.TaskEnvelope, stream: ClientStream | None) -> None:
        cancelled = self._stopped.pop(envelope.task_id)
        self.events.stopped(envelope.name, cancelled)
        pushed = cancelled and stream is not None and stream.push_result(pb.TaskResult(
            task_id=envelope.task_id, state=pb.CANCELLED, node_id=self.node_id,
            attempt=envelope.attempt))
        self._forget(envelope, None if pushed else stream)

    def _forget(self, envelope: pb.TaskEnvelope, stream: ClientStream | None) -> None:
        """A task is off our hands: count it out of the node, of its stream and, ordered,
        of its key (whose lease goes once the key has no task here)."""
        task_id = envelope.task_id
        if envelope.ordered:
            self.leases.leave(envelope.key)
        self.active[task_id] -= 1
        if not self.active[task_id]:
            del self.active[task_id]
            self.progress.forget(task_id)
            self._jobs.pop(task_id, None)
            self._stopped.pop(task_id, None)
        if stream is not None:
            stream.outstanding -= 1
            stream.wake()
        self.pending -= 1
        if self.pending == 0:
            self._idle.set()

    async def wait_idle(self, timeout: float) -> bool:
        """True when every started task finished and was recorded within ``timeout``."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True
