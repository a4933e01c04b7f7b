"""Every way out of a task is an outcome, in every tier: nothing kills a worker, leaks a
running count or blocks an ordered key."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from test_pool_support import make_job

from ringpool.pool import CpuSettings, FixedPolicy, Pools, PoolSettings
from ringpool.task import Kind, current_task

PARENT = os.getpid()


@pytest.fixture
async def pools() -> AsyncIterator[Pools]:
    made = Pools(PoolSettings(min_workers=0, max_workers=1, async_concurrency=1,
                              cpu=CpuSettings(processes=1)), policy=FixedPolicy(0))
    yield made
    await made.release(5.0)


def exit_now() -> None:
    sys.exit(3)


def interrupt() -> None:
    raise KeyboardInterrupt


async def exit_async() -> None:
    await asyncio.sleep(0)
    sys.exit(3)


async def interrupt_async() -> None:
    raise KeyboardInterrupt


async def cancelled_elsewhere() -> None:
    """A CancelledError the task did not ask for: it awaited something that got cancelled."""
    waited: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(waited.cancel)
    await waited


async def raises_cancelled() -> None:
    raise asyncio.CancelledError


def worker() -> int:
    """Which worker runs this: the thread of an io task, the process of a cpu task."""
    return threading.get_ident() if current_task() and os.getpid() == PARENT else os.getpid()


async def async_worker() -> int:
    return os.getpid()


CASES: list[tuple[str, Callable[..., Any], Kind, str]] = [
    ("SystemExit in an io task", exit_now, "io", "SystemExit"),
    ("KeyboardInterrupt in an io task", interrupt, "io", "KeyboardInterrupt"),
    ("SystemExit in an async task", exit_async, "async", "SystemExit"),
    ("KeyboardInterrupt in an async task", interrupt_async, "async", "KeyboardInterrupt"),
    ("CancelledError escaping an async task", cancelled_elsewhere, "async", "CancelledError"),
    ("CancelledError raised by an async task", raises_cancelled, "async", "CancelledError"),
    ("SystemExit in a cpu task", exit_now, "cpu", "SystemExit"),
]


@pytest.mark.parametrize(("fn", "kind", "error_type"),
                         [pytest.param(f, k, e, id=i) for i, f, k, e in CASES])
async def test_every_exit_of_a_task_is_its_failure(
    pools: Pools, fn: Callable[..., Any], kind: Kind, error_type: str
) -> None:
    after = async_worker if kind == "async" else worker
    first = await asyncio.wait_for(pools.submit(make_job(after, kind=kind)), 30)
    # Ordered, with the next job of its key already waiting behind it.
    failing = pools.submit(make_job(fn, kind=kind, key="k", ordered=True))
    following = pools.submit(make_job(after, kind=kind, key="k", ordered=True))
    outcome = await asyncio.wait_for(failing, 30)
    assert (outcome.ok, outcome.error_type) == (False, error_type)
    assert error_type in outcome.traceback
    # The key moves on, on the same worker (thread or process), and nothing stays running.
    assert (await asyncio.wait_for(following, 30)).value == first.value
    stats = pools.stats()
    assert (stats["running"], stats["ordered_waiting"], stats["inflight"]) == (0, 0, 0)
    assert stats[kind]["failed"] == 1
    if kind == "cpu":
        assert stats["cpu"]["restarts"] == 0


async def test_an_async_task_cancelled_on_purpose_is_cancelled_not_failed(pools: Pools) -> None:
    """``cancel()`` asks for the CancelledError: the outcome says cancelled. One nobody
    asked for, in the same tier, is still the task's failure."""
    started = asyncio.Event()

    async def waits() -> None:
        started.set()
        await asyncio.Event().wait()

    job = make_job(waits, kind="async", key="k", ordered=True)
    running = pools.submit(job)
    following = pools.submit(make_job(async_worker, kind="async", key="k", ordered=True))
    await asyncio.wait_for(started.wait(), 10)
    assert pools.cancel(job)
    outcome = await asyncio.wait_for(running, 10)
    assert outcome.cancelled and outcome.error_type == "TaskCancelled"
    assert job.context.cancelled.is_set()
    assert (await asyncio.wait_for(following, 10)).value == PARENT
    unasked = await asyncio.wait_for(pools.submit(make_job(cancelled_elsewhere, kind="async")), 10)
    assert not unasked.cancelled and unasked.error_type == "CancelledError"
    stats = pools.stats()
    assert (stats["running"], stats["inflight"], stats["async"]["failed"]) == (0, 0, 1)
