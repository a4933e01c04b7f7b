"""Tasks to try a cluster with: `taskctl dev up` and `make demo` load them (``--tasks ringpool.demo``)."""

from __future__ import annotations

import asyncio
import os
import time

from ringpool import PermanentError, current_task, task


@task("demo.add", timeout=5.0, max_retries=3, kind="io")
def add(a: int, b: int) -> int:
    return a + b


@task("demo.where", timeout=5.0)
def where(value: object = None) -> dict[str, object]:
    """Which node ran this (for tests of key affinity)."""
    ctx = current_task()
    return {"node": ctx.node_id if ctx else "", "pid": os.getpid(),
            "key": ctx.key if ctx else None, "value": value}


@task("demo.sleep", timeout=60.0)
def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@task("demo.async_add", timeout=5.0)
async def async_add(a: int, b: int) -> int:
    await asyncio.sleep(0)
    return a + b


@task("demo.fail", timeout=5.0, max_retries=0)
def fail(message: str = "boom") -> None:
    raise ValueError(message)


@task("demo.permanent", timeout=5.0)
def permanent(message: str = "cannot ever work") -> None:
    raise PermanentError(message)


@task("demo.cpu", timeout=30.0, kind="cpu")
def fib(n: int) -> int:
    return n if n < 2 else fib.fn(n - 1) + fib.fn(n - 2)
