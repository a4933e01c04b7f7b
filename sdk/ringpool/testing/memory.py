"""``InMemoryCluster``: the blocking face of ``AsyncInMemoryCluster`` (same logic, run on a
private loop), with the ``Cluster`` API plus the test's controls.

    with InMemoryCluster(tasks=["myapp.tasks"]) as cluster:
        handle = cluster.dispatch("user:42", add.s(1, 2))
        assert handle.result() == 3
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from ringpool.client.blocking import BlockingCluster, BlockingHandle
from ringpool.client.portal import Portal
from ringpool.store.store import TaskRecord
from ringpool.task import Task, current_task
from ringpool.testing.async_memory import AsyncInMemoryCluster, AsyncInMemoryTaskHandle


class InMemoryTaskHandle(BlockingHandle[AsyncInMemoryTaskHandle]):
    """A dispatched task: ``task_id``, ``status()``, ``result(timeout)``, ``accepted()``."""

    def __init__(self, portal: Portal, handle: AsyncInMemoryTaskHandle) -> None:
        super().__init__(portal, handle, handle.key)
        self.task_id = handle.task_id

    def accepted(self, timeout: float | None = None) -> str:
        """The task's id, at once: a refusal was raised by ``dispatch()`` itself."""
        return self.task_id

    def result(self, timeout: float | None = None) -> Any:
        """The return value; raises TaskFailed, TaskCancelled, ResultTimeout (a
        TimeoutError), TaskNotFound.

        Waiting lets up to ``timeout`` seconds of cluster time pass (forever when None),
        running what falls due meanwhile.
        """
        return self._portal.call(self._handle.result(timeout))


class InMemoryCluster(BlockingCluster[AsyncInMemoryCluster]):
    """``with InMemoryCluster(tasks=["myapp.tasks"], mode="eager") as cluster:``

    Takes the options of ``AsyncInMemoryCluster``: ``nodes``, ``mode``, ``limits``,
    ``pools``, ``result_ttl_s``, ``fingerprint_ttl_s``.
    """

    def __init__(self, tasks: Iterable[str] = (), **options: Any) -> None:
        self._async = AsyncInMemoryCluster(tasks, **options)
        self._portal = Portal("ringpool-in-memory")

    @property
    def mode(self) -> str:
        return self._async.mode

    @property
    def now(self) -> float:
        """The cluster's clock (seconds since the epoch): moves only as the test lets it."""
        return self._async.now

    def _wrap(self, handle: AsyncInMemoryTaskHandle) -> InMemoryTaskHandle:
        return InMemoryTaskHandle(self._portal, handle)

    def dispatch(self, key: str, task: Task, headers: Mapping[str, str] | None = None, *,
                 countdown: float | None = None, eta: datetime | None = None,
                 ) -> InMemoryTaskHandle:
        """Accept ``task`` for the owner of ``key`` (and in eager mode run it). With a
        ``countdown`` or an ``eta`` it is SCHEDULED until the cluster's clock gets there
        (``advance()``, or a wait for its result)."""
        when = self._async.eta_of(countdown, eta)
        # Whether we are inside a task is known on this thread only, not on the loop's.
        handles = self._portal.call(
            self._async._dispatch([(key, task)], headers, current_task() is not None, when))
        return self._wrap(handles[0])

    def dispatch_many(self, items: Iterable[tuple[str, Task]]) -> list[InMemoryTaskHandle]:
        """Dispatch many tasks; every task is checked before any is accepted."""
        handles = self._portal.call(
            self._async._dispatch(list(items), None, current_task() is not None))
        return [self._wrap(h) for h in handles]

    def handle(self, task_id: str, key: str = "") -> InMemoryTaskHandle:
        """A handle for a task dispatched elsewhere (e.g. by id from a log)."""
        return self._wrap(self._async.handle(task_id, key))

    def flush(self, timeout: float | None = None) -> None:
        """Returns at once: every dispatched task was accepted (or refused) by ``dispatch()``."""

    def run_pending(self) -> int:
        """Run every task due now, and what falls due meanwhile; how many runs ended."""
        return self._portal.call(self._async.run_pending())

    def advance(self, seconds: float) -> int:
        """Move the clock ``seconds`` ahead, running what falls due on the way."""
        return self._portal.call(self._async.advance(seconds))

    def record(self, task_id: str) -> TaskRecord | None:
        """A copy of the task's record (as ``taskctl task show`` reads it), or None."""
        return self._portal.call(self._async.record(task_id))

    def dlq(self) -> list[TaskRecord]:
        """Copies of the dead-lettered tasks' records, oldest first."""
        return self._portal.call(self._async.dlq())

    def dlq_replay(self, *task_ids: str) -> int:
        """Re-run dead-lettered tasks (all when no id is given) as fresh first attempts."""
        return self._portal.call(self._async._replay(task_ids, current_task() is not None))

    def dlq_purge(self, *task_ids: str) -> int:
        """Delete dead-lettered tasks and their records (all when no id is given)."""
        return self._portal.call(self._async.dlq_purge(*task_ids))
