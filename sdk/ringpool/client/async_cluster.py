"""``AsyncCluster``: dispatch by key through a ``Router``, hand out handles, wait for results.

``dispatch()`` checks a task on the caller's thread (key, size, JSON, the task name
against the names the nodes publish, a countdown or an eta) and returns its handle
once it is queued; the Router sends it and settles it. ``handle.accepted()`` waits
for the durable accept, ``flush()`` for every task dispatched so far, and ``close()``
(or leaving ``async with``) flushes. ``cancel()`` and ``schedule()`` go through the
state store. The sync ``Cluster`` uses this same object from a private event loop, so
the checks, the routing and the result logic exist once.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Coroutine, Generator, Iterable, Mapping
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any

from kazoo.client import KazooClient

from ringpool.client.metrics import CallTimer, client_metrics
from ringpool.client.results import ResultWaiter, unwrap
from ringpool.client.router import Router
from ringpool.client.schedules import publish
from ringpool.client.settings import ClientSettings
from ringpool.client.tickets import Ticket
from ringpool.core import envelope as envelopes
from ringpool.core import progress, telemetry
from ringpool.core.membership import Membership, connect_zookeeper
from ringpool.core.protocol import TaskState
from ringpool.core.ring import Ring
from ringpool.core.schedule import Schedule, check_schedule_name, timing
from ringpool.errors import (
    ClusterUnavailable,
    InvalidTask,
    ResultTimeout,
    RingpoolError,
    ScheduleNotFound,
    TaskAlreadyFinished,
    TaskNotFound,
)
from ringpool.store.schedules import StoredSchedule
from ringpool.store.store import StateStore
from ringpool.task import DEFAULT_GROUP, Task, TaskProgress
from ringpool.v1 import node_pb2 as pb

log = logging.getLogger(__name__)

CLOSE_STEP_S = 5.0  # a close step still running after this is left behind, with a warning


async def _at_most(seconds: float, step: Coroutine[Any, Any, None], what: str) -> None:
    """Run ``step`` for up to ``seconds``; past that, log and go on without it."""
    task = asyncio.ensure_future(step)
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if not done:
        log.warning("closing %s took over %.1fs; going on without it", what, seconds)
    elif task.exception() is not None:
        log.warning("closing %s failed: %r", what, task.exception())


def not_accepted(ticket: Ticket, timeout: float | None) -> ResultTimeout:
    return ResultTimeout(f"task {ticket.task_id} not accepted within {timeout}s")


class AsyncTaskHandle:
    """A dispatched task: its id, its accept, its state, and its result when it has one.

    ``task_id`` is final once the task is accepted: a task sent with an
    ``idempotency_key`` that repeats an earlier one takes the earlier task's id.
    """

    def __init__(self, cluster: AsyncCluster, ticket: Ticket) -> None:
        self._cluster = cluster
        self._ticket = ticket
        self.key = ticket.key
        if ticket.holder is None:
            ticket.holder = weakref.ref(self)

    def __repr__(self) -> str:
        return f"<TaskHandle {self.task_id} key={self.key!r}>"

    @property
    def task_id(self) -> str:
        return self._ticket.task_id

    async def accepted(self, timeout: float | None = None) -> str:
        """Wait until the task is durably accepted; its id. Raises its refusal
        (a DispatchError or ClusterUnavailable), or ResultTimeout."""
        ticket = self._ticket
        if not await ticket.accepted.wait_async(timeout):
            raise not_accepted(ticket, timeout)
        return ticket.accepted.get()

    async def status(self) -> TaskState:
        """Where the task is now: SCHEDULED, QUEUED, RUNNING, RETRY_SCHEDULED, SUCCEEDED,
        FAILED (in the DLQ), CANCELLED, or UNKNOWN (no record). Waits for the accept first;
        raises the refusal of a task that was not accepted."""
        await self.accepted()
        result = self._ticket.result
        if result.done and result.error is None:
            return TaskState.from_wire(result.get().state)
        (state,) = await self._cluster.store.states([self.task_id])
        return state

    async def progress(self) -> TaskProgress | None:
        """The latest progress the task reported (``current_task().progress``): pushed on
        this client's stream while it is open, else read from the task's record; None
        before any. Waits for the accept first; raises the refusal of a task that was
        not accepted."""
        await self.accepted()
        recorded = await self._cluster.store.progress(self.task_id)
        return progress.newest(self._ticket.progress, recorded)

    async def result(self, timeout: float | None = None) -> Any:
        """The return value; raises TaskFailed, TaskCancelled, ResultTimeout (a
        TimeoutError), TaskNotFound, or the refusal of a task that was not accepted."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        await self.accepted(timeout)
        remaining = None if timeout is None else max(0.0, timeout - (loop.time() - started))
        return unwrap(await self._cluster._results.wait(self.task_id, remaining))

    async def cancel(self) -> TaskState:
        """Cancel the task (see ``AsyncCluster.cancel``); waits for its accept first."""
        await self.accepted()
        return await self._cluster.cancel(self.task_id)


class AsyncCluster:
    """Connect with ``async with AsyncCluster.connect(...) as cluster`` or ``await``."""

    def __init__(self, settings: ClientSettings) -> None:
        self.settings = settings
        self.store = StateStore.from_url(settings.redis, settings.cluster)
        self._results = ResultWaiter(self.store, settings.result_poll_s)
        self.metrics = client_metrics(settings.metrics_registry)
        self._zk: KazooClient | None = None
        self.membership: Membership | None = None
        self._router: Router | None = None
        # Accepted tickets a handle holds, by task id: where pushed progress goes.
        self._held: weakref.WeakValueDictionary[str, Ticket] = weakref.WeakValueDictionary()

    @classmethod
    def connect(
        cls,
        zk: str | None = None,
        redis: str | None = None,
        cluster: str | None = None,
        token: str | None = None,
        **options: Any,
    ) -> AsyncCluster:
        """A cluster client; ``RINGPOOL_*`` variables fill what is not given."""
        return cls(ClientSettings.resolve(zk, redis, cluster, token, **options))

    async def start(self) -> AsyncCluster:
        if self._router is not None:
            return self
        settings = self.settings
        self._zk = await asyncio.to_thread(
            connect_zookeeper, settings.zk, settings.connect_timeout_s, settings.zk_auth
        )
        self.membership = await asyncio.to_thread(
            Membership(self._zk, settings.cluster).start
        )
        self._router = Router(
            settings, self.membership, self.metrics, on_result=self._results.deliver,
            on_progress=self._progressed, on_accepted=self._expect_result,
            on_refused=self._report_refusal,
        ).start()
        return self

    def __await__(self) -> Generator[Any, None, AsyncCluster]:
        return self.start().__await__()

    async def __aenter__(self) -> AsyncCluster:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Flush, then stop listening and close every link and connection (never waiting
        forever on one)."""
        if self._router is not None:
            await self._router.flush()
            await _at_most(CLOSE_STEP_S, self._router.close(), "the links")
            self._router = None
        await _at_most(CLOSE_STEP_S, self._results.close(), "the result listener")
        if self.membership is not None:
            await asyncio.to_thread(self.membership.stop)
            self.membership = None
        if self._zk is not None:
            await asyncio.to_thread(self._zk.stop)
            self._zk.close()
            self._zk = None
        await self.store.close()

    @property
    def router(self) -> Router:
        if self._router is None:
            raise ClusterUnavailable("not connected: use `async with AsyncCluster.connect()`")
        return self._router

    @property
    def ring(self) -> Ring:
        return self.router.ring

    def owner(self, key: str, group: str = DEFAULT_GROUP) -> str:
        """The node id that owns ``key`` on the current ring (of task group ``group``)."""
        envelopes.check_key(key, self.settings.limits)
        return self.ring.group(envelopes.check_group(group)).owner(key)

    # -- dispatching ---------------------------------------------------------------
    # ``_ticket`` is the whole of a dispatch that does not wait: both faces call it on
    # the caller's thread, then queue the ticket their way.

    def _ticket(
        self, key: str, task: Task, headers: Mapping[str, str] | None, timer: CallTimer | None,
        eta: float = 0.0,
    ) -> Ticket:
        """A checked ticket for the ring of the task's group; raises the DispatchError a
        node would answer."""
        ring = self.ring
        if not isinstance(task, Task):
            raise InvalidTask(f"expected a Task, got {type(task).__name__}")
        group = ring.group_for(task.name, task.group)
        envelope = envelopes.build(key, task, ring.version, headers, self.settings.limits,
                                   group=group, eta=eta, reply_to=self.store.reply_to)
        ring.check_served(group, task.name)
        if eta:
            self.metrics.delayed.inc()
        return Ticket(envelope, key, task, timer)

    def _tickets(self, items: list[tuple[str, Task]], traced: Mapping[str, str] | None
                 ) -> list[Ticket]:
        timer = CallTimer(self.metrics.dispatch_many, len(items)) if items else None
        return [self._ticket(key, task, traced, timer) for key, task in items]

    async def dispatch(
        self, key: str, task: Task, headers: Mapping[str, str] | None = None, *,
        countdown: float | None = None, eta: datetime | None = None,
    ) -> AsyncTaskHandle:
        """Queue ``task`` for the owner of ``key``; returns its handle at once (waiting
        only while ``max_outstanding`` tasks are unanswered).

        With ``countdown`` (seconds) or ``eta`` (a timezone-aware datetime) the task is
        held durably in Redis (SCHEDULED) and sent to its key's owner of that time when
        it falls due; it can be cancelled until then.
        """
        when = envelopes.eta_of(countdown, eta)
        with telemetry.dispatch_span("dispatch", name_of(task), 1, headers) as traced:
            ticket = self._ticket(key, task, headers if traced is None else traced,
                                  CallTimer(self.metrics.dispatch, 1), when)
            handle = AsyncTaskHandle(self, ticket)
            await self.router.queue_async((ticket,))
        return handle

    async def dispatch_many(
        self, items: Iterable[tuple[str, Task]]
    ) -> list[AsyncTaskHandle]:
        """Dispatch many tasks; every task is checked before any is queued."""
        items = list(items)
        with telemetry.dispatch_span("dispatch_many", name_of(items[0][1]) if items else "",
                                     len(items)) as traced:
            tickets = self._tickets(items, traced)
            handles = [AsyncTaskHandle(self, ticket) for ticket in tickets]
            await self.router.queue_async(tickets)
        return handles

    async def flush(self, timeout: float | None = None) -> None:
        """Wait until every task dispatched so far is accepted or refused (refusals stay on
        their handles and go to ``on_refused``); ResultTimeout after ``timeout``."""
        await self.router.flush(timeout)

    def handle(self, task_id: str, key: str = "") -> AsyncTaskHandle:
        """A handle for a task dispatched elsewhere (e.g. by id from a log)."""
        ticket = Ticket(pb.TaskEnvelope(task_id=task_id), key)
        ticket.accepted.set(task_id)
        self._expect_result(ticket)
        return AsyncTaskHandle(self, ticket)

    # -- cancelling and schedules --------------------------------------------------

    async def cancel(self, task_id: str) -> TaskState:
        """Cancel a task that has not finished; returns the state it was in.

        A SCHEDULED, QUEUED or RETRY_SCHEDULED task never runs; a RUNNING one gets
        ``ctx.cancelled`` (an async task is cancelled, a cpu task's process killed) and
        what it returns is dropped. The record ends CANCELLED, and ``result()`` raises
        TaskCancelled. Raises TaskAlreadyFinished for a task that already has its
        outcome, TaskNotFound for an unknown id.
        """
        if not isinstance(task_id, str) or not task_id:
            raise TaskNotFound(f"no task {task_id!r}")
        try:
            state = await self.store.cancel(task_id)
        except (TaskAlreadyFinished, TaskNotFound) as exc:
            outcome = "finished" if isinstance(exc, TaskAlreadyFinished) else "not_found"
            self.metrics.cancels.labels(outcome).inc()
            raise
        self.metrics.cancels.labels("cancelled").inc()
        self._results.deliver(pb.TaskResult(task_id=task_id, state=pb.CANCELLED))
        return state

    async def schedule(
        self, name: str, key: str, task: Task, *, cron: str | None = None,
        every: float | timedelta | None = None, tz: str | None = None,
    ) -> StoredSchedule:
        """Dispatch ``task`` to ``key`` at each tick: ``cron="*/5 * * * *"`` (in the time
        zone ``tz``, default UTC) or ``every=SECONDS``; see ``ringpool.core.schedule``
        for when ticks fall, across DST changes and after an outage.

        The schedule named ``name`` is created, or replaced when its definition differs
        (its counts and pause are kept); the same definition again changes nothing.
        Returns the schedule as stored. Raises InvalidSchedule, or the DispatchError the
        task itself would get (UnknownTask, InvalidTask, InvalidKey).
        """
        spec = Schedule(name, key, task, timing(cron, every, tz))
        _, stored = await publish(self.store, self.ring, spec, "api", self.settings.limits)
        return stored

    async def unschedule(self, name: str) -> None:
        """Remove the schedule ``name`` (tasks its ticks already made stay);
        ScheduleNotFound when there is none."""
        check_schedule_name(name)
        if not await self.store.schedules.remove(name):
            raise ScheduleNotFound(f"no schedule named {name!r}")

    # -- the Router's hooks (on the loop) ------------------------------------------

    def _expect_result(self, ticket: Ticket) -> None:
        if not ticket.unheld:
            self._results.watch(ticket.task_id, ticket.result)
            self._held[ticket.task_id] = ticket

    def _progressed(self, message: pb.TaskProgress) -> None:
        ticket = self._held.get(message.task_id)
        if ticket is not None:
            ticket.progress = progress.newest(ticket.progress, progress.from_wire(message))

    def _report_refusal(self, ticket: Ticket) -> None:
        task, error = ticket.task, ticket.accepted.error
        if task is None or not isinstance(error, RingpoolError):
            return  # sent by the Router's own callers, who read the outcome themselves
        on_refused = self.settings.on_refused
        if on_refused is None:
            log.warning("task %s for key %r was not accepted: %s: %s", task.name, ticket.key,
                        type(error).__name__, error)
            return
        try:
            on_refused(ticket.key, task, error)
        except Exception:
            log.exception("on_refused failed for task %s (key %r)", task.name, ticket.key)


def name_of(task: object) -> str:
    """The task's name for a span, whatever was passed as the task."""
    return str(getattr(task, "name", "?"))
