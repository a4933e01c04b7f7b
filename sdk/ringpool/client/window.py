"""``Window``: the bound on tasks dispatched but not yet accepted or refused.

Callers take room before a task is queued (blocking on their own thread, or
awaiting on the loop) and the loop gives it back when the task is settled. The
bound is by count and by bytes, so a client's memory stays bounded while an owner
is slow or down. A task larger than the whole byte bound still goes, alone.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque

from ringpool.errors import ClusterUnavailable


class Window:
    def __init__(self, max_tasks: int, max_bytes: int) -> None:
        self.max_tasks = max_tasks
        self.max_bytes = max_bytes
        self.tasks = 0
        self.bytes = 0
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self._threads_waiting = 0
        self._loop_waiters: deque[asyncio.Future[None]] = deque()

    def _fits(self, size: int) -> bool:
        return not self.tasks or (
            self.tasks < self.max_tasks and self.bytes + size <= self.max_bytes)

    def try_take(self, size: int) -> bool:
        """Take room for one task of ``size`` bytes if there is some now."""
        with self._lock:
            if not self._fits(size):
                return False
            self.tasks += 1
            self.bytes += size
            return True

    def take(self, size: int, timeout: float) -> None:
        """Take room, blocking this thread up to ``timeout``; ClusterUnavailable after it."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self._threads_waiting += 1
            try:
                while not self._fits(size):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise self._full(timeout)
                    self._room.wait(remaining)
            finally:
                self._threads_waiting -= 1
            self.tasks += 1
            self.bytes += size

    async def take_async(self, size: int, timeout: float) -> None:
        """``take`` for the event loop the window is given back on."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            with self._lock:
                if self._fits(size):
                    self.tasks += 1
                    self.bytes += size
                    return
                waiter = loop.create_future()
                self._loop_waiters.append(waiter)
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise self._full(timeout)
            await asyncio.wait((waiter,), timeout=remaining)
            waiter.cancel()  # no-op when woken; else give() must not spend a wake-up on it

    def give(self, size: int) -> None:
        """Give back one task's room (on the event loop)."""
        with self._lock:
            self.tasks -= 1
            self.bytes -= size
            if self._threads_waiting:
                self._room.notify_all()
            waiters = self._loop_waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                break

    def _full(self, timeout: float) -> ClusterUnavailable:
        return ClusterUnavailable(
            f"{self.tasks} tasks ({self.bytes} bytes) are still waiting to be accepted after "
            f"{timeout:g}s: the cluster does not keep up (max_outstanding={self.max_tasks}, "
            f"max_outstanding_bytes={self.max_bytes})")
