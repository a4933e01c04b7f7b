"""A private event loop on a daemon thread, for driving async code from sync callers."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
CLOSE_WAIT_S = 5.0  # how long tasks still running at close get to finish their cancellation


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop where it exists (not on Windows): a loop iteration there costs under half,
    and a task's trip through a node takes some twenty of them."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class Portal:
    def __init__(self, name: str = "ringpool-loop") -> None:
        self.loop = new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the portal's loop and wait for its result here."""
        if threading.current_thread() is self._thread:
            coroutine.close()
            raise RuntimeError("a sync ringpool call cannot be made from its own event loop")
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def close(self) -> None:
        """Cancel what still runs on the loop (as ``asyncio.run`` does), then stop it.

        A task left pending when its loop closes is destroyed half-way: its ``finally``
        blocks never run and its sockets are closed by the garbage collector instead.
        """
        if self.loop.is_closed():
            return
        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(_cancel_leftovers(CLOSE_WAIT_S), self.loop).result(
                    CLOSE_WAIT_S * 2)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5.0)
        self.loop.close()


async def _cancel_leftovers(timeout_s: float) -> None:
    # Cancelling a task may start others (gRPC consumes a stream's requests in a task of
    # its own): go round until none is left, within the timeout, before the generators
    # are closed, or a generator still running is closed under its consumer.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    current = asyncio.current_task()
    while leftovers := [task for task in asyncio.all_tasks() if task is not current]:
        remaining = deadline - loop.time()
        if remaining <= 0:
            break
        for task in leftovers:
            task.cancel()
        await asyncio.wait(leftovers, timeout=remaining)
    await loop.shutdown_asyncgens()
