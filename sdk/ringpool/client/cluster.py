"""``Cluster``: the blocking face of ``AsyncCluster`` (same logic, run on a private loop).

A dispatch never goes through the loop on the caller's thread: the task is
checked and queued here, and the loop picks it up. Waiting for an accept or a
result blocks this thread on the task's latch, not on a trip through the loop.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from ringpool.client.async_cluster import AsyncCluster, AsyncTaskHandle, name_of, not_accepted
from ringpool.client.blocking import BlockingCluster, BlockingHandle
from ringpool.client.metrics import CallTimer
from ringpool.client.portal import Portal
from ringpool.client.results import FAST_PATH_WAIT_S, unwrap
from ringpool.client.settings import ClientSettings
from ringpool.client.tickets import Ticket
from ringpool.core import envelope as envelopes
from ringpool.core import telemetry
from ringpool.store.schedules import StoredSchedule
from ringpool.task import Task


class TaskHandle(BlockingHandle[AsyncTaskHandle]):
    """A dispatched task: ``task_id``, ``accepted()``, ``status()``, ``result(timeout)``."""

    def __init__(self, cluster: Cluster, ticket: Ticket, provisional_id: bool = False) -> None:
        super().__init__(cluster._portal, AsyncTaskHandle(cluster._async, ticket), ticket.key)
        self._cluster = cluster
        self._ticket = ticket
        # A task with an idempotency key may turn out to repeat an earlier one, whose id
        # it then takes: its id is known once it is accepted.
        self._provisional_id = provisional_id

    @property
    def task_id(self) -> str:
        """The task's id (for a task with an idempotency key, waits for its accept)."""
        if self._provisional_id:
            return self.accepted()
        return self._ticket.task_id

    def accepted(self, timeout: float | None = None) -> str:
        """Block until the task is durably accepted; its id. Raises its refusal (a
        DispatchError or ClusterUnavailable), or ResultTimeout."""
        latch = self._ticket.accepted
        if not latch.wait(timeout):
            raise not_accepted(self._ticket, timeout)
        return latch.get()

    def result(self, timeout: float | None = None) -> Any:
        """The return value; raises TaskFailed, TaskCancelled, ResultTimeout (a
        TimeoutError), or the refusal of a task that was not accepted."""
        started = time.monotonic()
        latch = self._ticket.result  # settles with the refusal too
        results = self._cluster._async._results
        # The usual case: the accept and the result come on the stream (in one message
        # for a quick task): wait for them on this thread. Only a slow result takes the
        # full path through the loop (and Redis).
        if latch.done or (not results.listening and latch.wait(
                FAST_PATH_WAIT_S if timeout is None else min(FAST_PATH_WAIT_S, timeout))):
            return unwrap(latch.get())
        task_id = self.accepted(None if timeout is None else _left(timeout, started))
        return unwrap(self._cluster._portal.call(
            results.wait(task_id, None if timeout is None else _left(timeout, started))))


def _left(timeout: float, started: float) -> float:
    return max(0.0, timeout - (time.monotonic() - started))


class Cluster(BlockingCluster[AsyncCluster]):
    """``with Cluster.connect(zk=..., redis=..., cluster=...) as cluster:``"""

    def __init__(self, settings: ClientSettings) -> None:
        self._portal = Portal()
        self._async = AsyncCluster(settings)
        try:
            self._portal.call(self._async.start())
        except BaseException:
            self._portal.call(self._async.close())
            self._portal.close()
            raise

    @classmethod
    def connect(
        cls,
        zk: str | None = None,
        redis: str | None = None,
        cluster: str | None = None,
        token: str | None = None,
        **options: Any,
    ) -> Cluster:
        """A connected client; ``RINGPOOL_*`` variables fill what is not given."""
        return cls(ClientSettings.resolve(zk, redis, cluster, token, **options))

    @property
    def settings(self) -> ClientSettings:
        return self._async.settings

    def dispatch(
        self, key: str, task: Task, headers: Mapping[str, str] | None = None, *,
        countdown: float | None = None, eta: datetime | None = None,
    ) -> TaskHandle:
        """Check ``task`` and queue it for the owner of ``key``; returns its handle at once
        (blocking only while ``max_outstanding`` tasks are unanswered).

        With ``countdown`` (seconds) or ``eta`` (a timezone-aware datetime) the task is
        held durably (SCHEDULED) until then, and can be cancelled meanwhile.
        """
        cluster = self._async
        when = envelopes.eta_of(countdown, eta)
        with telemetry.dispatch_span("dispatch", name_of(task), 1, headers) as traced:
            ticket = cluster._ticket(key, task, headers if traced is None else traced,
                                     CallTimer(cluster.metrics.dispatch, 1), when)
            handle = TaskHandle(self, ticket, bool(task.idempotency_key))
            cluster.router.queue((ticket,))
        return handle

    def dispatch_many(self, items: Iterable[tuple[str, Task]]) -> list[TaskHandle]:
        """Dispatch many tasks; every task is checked before any is queued."""
        cluster = self._async
        items = list(items)
        with telemetry.dispatch_span("dispatch_many", name_of(items[0][1]) if items else "",
                                     len(items)) as traced:
            tickets = cluster._tickets(items, traced)
            handles = [TaskHandle(self, ticket, bool(task.idempotency_key))
                       for ticket, (_, task) in zip(tickets, items, strict=True)]
            cluster.router.queue(tickets)
        return handles

    def flush(self, timeout: float | None = None) -> None:
        """Block until every task dispatched so far is accepted or refused (refusals stay on
        their handles and go to ``on_refused``); ResultTimeout after ``timeout``."""
        self._portal.call(self._async.flush(timeout))

    def handle(self, task_id: str, key: str = "") -> TaskHandle:
        """A handle for a task dispatched elsewhere (e.g. by id from a log)."""
        return TaskHandle(self, self._portal.call(_accepted_ticket(self._async, task_id, key)))

    def schedule(
        self, name: str, key: str, task: Task, *, cron: str | None = None,
        every: float | timedelta | None = None, tz: str | None = None,
    ) -> StoredSchedule:
        """Dispatch ``task`` to ``key`` at each tick of ``cron`` (in ``tz``) or ``every``
        seconds; creates or replaces the schedule ``name`` (see ``AsyncCluster.schedule``)."""
        return self._portal.call(self._async.schedule(name, key, task, cron=cron, every=every,
                                                      tz=tz))

    def unschedule(self, name: str) -> None:
        """Remove the schedule ``name``; ScheduleNotFound when there is none."""
        self._portal.call(self._async.unschedule(name))


async def _accepted_ticket(cluster: AsyncCluster, task_id: str, key: str) -> Ticket:
    # Result latches are made on the portal's loop.
    return cluster.handle(task_id, key)._ticket
