"""What the blocking faces share (``Cluster`` and ``TaskHandle``, ``InMemoryCluster`` and
``InMemoryTaskHandle``): an async twin, driven on a private loop (a ``Portal``), and the
calls that only pass through to it.

Each face writes the rest itself: how it starts its twin and how it dispatches and
waits (the real ``Cluster`` queues and waits on this thread, never through the loop).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import Any, Generic, Protocol, Self, TypeVar

from ringpool.client.portal import Portal
from ringpool.core.protocol import TaskState
from ringpool.core.ring import Ring
from ringpool.task import DEFAULT_GROUP, TaskProgress


class AsyncHandle(Protocol):
    """The async twin of a blocking task handle."""

    async def status(self) -> TaskState: ...

    async def progress(self) -> TaskProgress | None: ...

    async def cancel(self) -> TaskState: ...


class AsyncFace(Protocol):
    """The async twin of a blocking cluster."""

    @property
    def ring(self) -> Ring: ...

    def owner(self, key: str, group: str = DEFAULT_GROUP) -> str: ...

    async def cancel(self, task_id: str) -> TaskState: ...

    async def close(self) -> None: ...


H = TypeVar("H", bound=AsyncHandle)
A = TypeVar("A", bound=AsyncFace)


class BlockingHandle(ABC, Generic[H]):
    """A dispatched task, answered by its async twin ``handle`` on ``portal``'s loop."""

    def __init__(self, portal: Portal, handle: H, key: str) -> None:
        self._portal = portal
        self._handle = handle
        self.key = key

    def __repr__(self) -> str:
        return repr(self._handle)

    @abstractmethod
    def accepted(self, timeout: float | None = None) -> str:
        """The task's id once it is durably accepted."""

    @abstractmethod
    def result(self, timeout: float | None = None) -> Any:
        """The task's return value."""

    def status(self) -> TaskState:
        """Where the task is now (a ``TaskState``; UNKNOWN when there is no record): SCHEDULED,
        QUEUED, RUNNING, RETRY_SCHEDULED, SUCCEEDED, FAILED (in the DLQ), CANCELLED. Waits for
        the accept first; raises the refusal of a task that was not accepted."""
        self.accepted()
        return self._portal.call(self._handle.status())

    def progress(self) -> TaskProgress | None:
        """The latest progress the task reported (``current_task().progress``); None before
        any. Waits for the accept first."""
        self.accepted()
        return self._portal.call(self._handle.progress())

    def cancel(self) -> TaskState:
        """Cancel the task (see the cluster's ``cancel``); waits for its accept first."""
        self.accepted()
        return self._portal.call(self._handle.cancel())


class BlockingCluster(Generic[A]):
    """A cluster whose calls run on its async twin ``_async``, on ``_portal``'s loop."""

    _async: A
    _portal: Portal

    @property
    def ring(self) -> Ring:
        return self._async.ring

    def owner(self, key: str, group: str = DEFAULT_GROUP) -> str:
        """The node id that owns ``key`` on the current ring (of task group ``group``)."""
        return self._async.owner(key, group)

    def cancel(self, task_id: str) -> TaskState:
        """Cancel a task that has not finished; the state it was in. A waiting task never
        runs, a running one gets ``ctx.cancelled`` (async: cancelled, cpu: its process
        killed). Raises TaskAlreadyFinished or TaskNotFound (see the async twin's
        ``cancel``)."""
        return self._portal.call(self._async.cancel(task_id))

    def close(self) -> None:
        """Close the async twin (a real cluster flushes first, then closes every
        connection), then the private loop."""
        if not self._portal.loop.is_closed():
            self._portal.call(self._async.close())
            self._portal.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
