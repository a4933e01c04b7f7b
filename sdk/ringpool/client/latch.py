"""``Latch``: a value (or an error) set once on the event loop, awaited there or waited
for from any other thread.

A dispatched task has two: its accept and its result. Most are never waited for (a
loop of ``dispatch()`` calls that only flushes at the end), so a latch costs no
event, future or lock until somebody waits.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Generic, TypeVar

T = TypeVar("T")

_EVENT_LOCK = threading.Lock()  # only for making a latch's first thread event


class Latch(Generic[T]):
    __slots__ = ("__weakref__", "_done", "_error", "_event", "_followers", "_futures", "_value")

    def __init__(self) -> None:
        self._done = False
        self._value: T | None = None
        self._error: BaseException | None = None
        self._event: threading.Event | None = None
        self._futures: list[asyncio.Future[None]] | None = None
        self._followers: list[Latch[T]] | None = None

    @property
    def done(self) -> bool:
        return self._done

    @property
    def error(self) -> BaseException | None:
        """The error it was failed with (None while pending or when it has a value)."""
        return self._error

    def set(self, value: T) -> None:
        """Settle with ``value`` (on the loop; a settled latch stays as it is)."""
        if not self._done:
            self._value = value
            self._settle()

    def fail(self, error: BaseException) -> None:
        """Settle with ``error`` (on the loop; a settled latch stays as it is)."""
        if not self._done:
            self._error = error
            self._settle()

    def _settle(self) -> None:
        # _done first: a thread that makes its event after this line sees _done.
        self._done = True
        if self._event is not None:
            self._event.set()
        if self._futures:
            for future in self._futures:
                if not future.done():
                    future.set_result(None)
            self._futures = None
        if self._followers:
            for follower in self._followers:
                self._pass_on(follower)
            self._followers = None

    def follow(self, other: Latch[T]) -> None:
        """Settle ``other`` the way this one settles (at once if it has)."""
        if self._done:
            self._pass_on(other)
        elif self._followers is None:
            self._followers = [other]
        else:
            self._followers.append(other)

    def _pass_on(self, other: Latch[T]) -> None:
        if self._error is not None:
            other.fail(self._error)
        else:
            other.set(self._value)  # type: ignore[arg-type]

    def get(self) -> T:
        """The value, or raise the error; only once ``done``."""
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]

    def wait(self, timeout: float | None = None) -> bool:
        """Block this thread (never the loop's) until settled; False at the timeout."""
        if self._done:
            return True
        with _EVENT_LOCK:
            if self._event is None:
                self._event = threading.Event()
        # The event exists before _done is read again: a settle from now on sets it.
        return self._done or self._event.wait(timeout)

    async def wait_async(self, timeout: float | None = None) -> bool:
        """Wait on the loop until settled; False at the timeout."""
        if self._done:
            return True
        future = asyncio.get_running_loop().create_future()
        if self._futures is None:
            self._futures = []
        self._futures.append(future)
        await asyncio.wait((future,), timeout=timeout)
        return self._done
