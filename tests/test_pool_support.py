"""Helpers shared by the pool tests: jobs from plain functions."""

from __future__ import annotations

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

