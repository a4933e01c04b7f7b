"""``Cluster``: the blocking face of ``AsyncCluster`` (same logic, run on a private loop)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

from ringpool.client.async_cluster import AsyncCluster, AsyncTaskHandle
from ringpool.client.portal import Portal
from ringpool.client.results import FAST_PATH_WAIT_S, unwrap
from ringpool.client.settings import ClientSettings
from ringpool.core.protocol import TaskState
from ringpool.core.ring import Ring
from ringpool.task import Task


class TaskHandle:
    """A dispatched task: ``task_id``, ``status()``, ``result(timeout)``."""

    def __init__(
        self, portal: Portal, handle: AsyncTaskHandle, arrived: threading.Event | None = None
    ) -> None:
        self._portal = portal
        self._handle = handle
        self._arrived = arrived  # set from the loop once the result is in, when watched
        self.task_id = handle.task_id
        self.key = handle.key

    def __repr__(self) -> str:
        return f"<TaskHandle {self.task_id} key={self.key!r}>"

    def status(self) -> TaskState:
        """Where the task is now (a ``TaskState``; UNKNOWN when there is no record)."""
        return self._portal.call(self._handle.status())

    def result(self, timeout: float | None = None) -> Any:
        """The return value; raises TaskFailed, or ResultTimeout (a TimeoutError)."""
        pushed = self._handle.pushed_result()
        if pushed is not None:  # already here: no trip through the event loop
            return unwrap(pushed)
        # The usual case: the result is on its way over the stream. Wait for it on this
        # thread, woken by the future itself; only a slow result takes the full path.
        started = time.monotonic()
        if self._handle.expects_push():
            arrived = self._arrived
            if arrived is None:
                arrived = threading.Event()
                self._portal.loop.call_soon_threadsafe(self._handle.when_done, arrived.set)
            first_wait = FAST_PATH_WAIT_S if timeout is None else min(FAST_PATH_WAIT_S, timeout)
            if arrived.wait(first_wait) and (pushed := self._handle.pushed_result()) is not None:
                return unwrap(pushed)
        remaining = None if timeout is None else max(0.0, timeout - (time.monotonic() - started))
        return self._portal.call(self._handle.result(remaining))


class Cluster:
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

    @property
    def ring(self) -> Ring:
        return self._async.ring

    def owner(self, key: str) -> str:
        return self._async.owner(key)

    def _wrap(self, handle: AsyncTaskHandle) -> TaskHandle:
        return TaskHandle(self._portal, handle)

    def dispatch(self, key: str, task: Task, headers: Mapping[str, str] | None = None) -> TaskHandle:
        handle, arrived = self._portal.call(_dispatch_watched(self._async, key, task, headers))
        return TaskHandle(self._portal, handle, arrived)

    def dispatch_many(self, items: Iterable[tuple[str, Task]]) -> list[TaskHandle]:
        return [self._wrap(h) for h in self._portal.call(self._async.dispatch_many(list(items)))]

    def handle(self, task_id: str, key: str = "") -> TaskHandle:
        return self._wrap(self._portal.call(_make_handle(self._async, task_id, key)))

    def close(self) -> None:
        if not self._portal.loop.is_closed():
            self._portal.call(self._async.close())
            self._portal.close()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


async def _dispatch_watched(
    cluster: AsyncCluster, key: str, task: Task, headers: Mapping[str, str] | None
) -> tuple[AsyncTaskHandle, threading.Event]:
    # A single dispatch is usually followed by result(): start watching for it here, on
    # the loop, so that result() waits without another trip through the loop.
    handle = await cluster.dispatch(key, task, headers)
    arrived = threading.Event()
    handle.when_done(arrived.set)
    return handle, arrived


async def _make_handle(cluster: AsyncCluster, task_id: str, key: str) -> AsyncTaskHandle:
    # Handles own loop-bound futures, so they are made on the portal's loop.
    return cluster.handle(task_id, key)
