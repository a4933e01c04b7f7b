"""The loop of a leader's firer: do what is due, sleep until more is, wake early when Redis
announces something new.

``run_woken`` serves the retry and delay firers (``firing.py``) and the schedule ticker
(``ticker.py``): each gives one step, which does what is due now and says how long
until more is. The step's failures (Redis away) are logged and tried again shortly:
what waits, waits in Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)
IDLE_WAIT_S = 5.0  # the longest sleep: a wake that was missed costs at most this
RETRY_WAIT_S = 0.5  # after a failed step

Step = Callable[[], Awaitable[float | None]]
WatchWakes = Callable[[Callable[[], Awaitable[None]]], Coroutine[Any, Any, None]]


async def run_woken(step: Step, watch_wakes: WatchWakes, what: str) -> None:
    """Run ``step`` until cancelled. It returns the seconds until more is due (0 or less:
    run it again at once; None: nothing waits); the sleep until then ends early when
    ``watch_wakes`` calls back. ``what`` names the step in the log."""
    wake = asyncio.Event()

    async def woken() -> None:
        wake.set()

    listener = asyncio.create_task(watch_wakes(woken))
    try:
        while True:
            # Clear before the step reads, not after: a wake that lands between the read
            # and the wait must cut the wait short, not be wiped out.
            wake.clear()
            try:
                wait = await step()
            except Exception as exc:
                log.warning("%s failed (%s); trying again shortly", what, exc)
                await asyncio.sleep(RETRY_WAIT_S)
                continue
            if wait is None or wait > 0:
                with contextlib.suppress(TimeoutError):
                    # asyncio.timeout, not wait_for: in 3.11 wait_for can swallow the
                    # cancellation that ends a term, and a demoted leader would go on.
                    async with asyncio.timeout(IDLE_WAIT_S if wait is None
                                               else min(wait, IDLE_WAIT_S)):
                        await wake.wait()
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
