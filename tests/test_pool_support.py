"""Helpers shared by the pool tests: jobs from plain functions and waiting on conditions."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

from ringpool.pool import Job
from ringpool.task import Kind, RetryPolicy, TaskContext, TaskDefinition


def make_job(
    fn: Callable[..., Any],
    *args: Any,
    kind: Kind = "io",
    timeout_s: float = 10.0,
    key: str = "k",
    priority: int = 0,
    ordered: bool = False,
) -> Job:
    task_id = uuid.uuid4().hex
    definition = TaskDefinition(f"t.{fn.__name__}", fn, kind, timeout_s, RetryPolicy())
    ctx = TaskContext(task_id, key, definition.name, 1, time.time() + timeout_s)
    return Job(task_id, key, definition, list(args), {}, timeout_s, ctx, priority, ordered)


def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Poll ``condition`` until it holds; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s")
        time.sleep(0.005)


async def eventually(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """``wait_until`` for async tests: the event loop keeps running while it waits."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s")
        await asyncio.sleep(0.005)
