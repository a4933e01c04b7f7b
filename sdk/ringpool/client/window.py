"""``Window``: the bound on tasks dispatched but not yet accepted or refused.

Callers take room before a task is queued (blocking on their own thread, or
awaiting on the loop) and the loop gives it back when the task is settled. The
bound is by count and by bytes, so a client's memory stays bounded while an owner
is slow or down. A task larger than the whole byte bound still goes, alone.

Takers and the giver never contend: callers count what they took (under a lock
among themselves), the loop alone counts what it gave back, and a taker reads the
loop's count as it stands (an older count only makes the window look fuller).
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
        self._taken_tasks = 0  # callers' side, under _lock
        self._taken_bytes = 0
        self._given_tasks = 0  # the loop's side
        self._given_bytes = 0
        self._lock = threading.Lock()
        self._room = threading.Condition()  # callers blocked in take() wait on it
        self._threads_waiting = 0
        self._loop_waiters: deque[asyncio.Future[None]] = deque()

    @property
    def tasks(self) -> int:
        return self._taken_tasks - self._given_tasks

    @property
    def bytes(self) -> int:
        return self._taken_bytes - self._given_bytes

    def try_take(self, size: int) -> bool:
        """Take room for one task of ``size`` bytes if there is some now."""
        with self._lock:
            tasks = self._taken_tasks - self._given_tasks
            if tasks and (tasks >= self.max_tasks
                          or self._taken_bytes - self._given_bytes + size > self.max_bytes):
                return False
            self._taken_tasks += 1
            self._taken_bytes += size
            return True

    def take(self, size: int, timeout: float) -> None:
        """Take room, blocking this thread up to ``timeout``; ClusterUnavailable after it."""
        if self.try_take(size):
            return
        deadline = time.monotonic() + timeout
        with self._room:
            self._threads_waiting += 1
            try:
                # give() notifies under _room: it cannot slip between a check and the wait.
                while not self.try_take(size):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise self._full(timeout)
                    self._room.wait(remaining)
            finally:
                self._threads_waiting -= 1

    async def take_async(self, size: int, timeout: float) -> None:
        """``take`` for the event loop the window is given back on."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.try_take(size):
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise self._full(timeout)
            waiter = loop.create_future()
            self._loop_waiters.append(waiter)
            await asyncio.wait((waiter,), timeout=remaining)
            waiter.cancel()  # no-op when woken; else give() must not spend a wake-up on it

    def give(self, size: int) -> None:
        """Give back one task's room (on the event loop)."""
        self._given_tasks += 1
        self._given_bytes += size
        if self._threads_waiting:
            with self._room:
                self._room.notify_all()
        waiters = self._loop_waiters
        while waiters:
            if not (waiter := waiters.popleft()).done():
                waiter.set_result(None)
                break

    def _full(self, timeout: float) -> ClusterUnavailable:
        return ClusterUnavailable(
            f"{self.tasks} tasks ({self.bytes} bytes) are still waiting to be accepted after "
            f"{timeout:g}s: the cluster does not keep up (max_outstanding={self.max_tasks}, "
            f"max_outstanding_bytes={self.max_bytes})")
