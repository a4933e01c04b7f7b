"""Tasks to try a cluster with: `taskctl dev up` and `make demo` load them (``--tasks ringpool.demo``).

``demo.render`` runs in group ``gpu`` only: on nodes started with ``--group gpu``
(``taskctl dev up --group gpu=1``).
"""

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


@task("demo.count", timeout=300.0)
def count(to: int, step_s: float = 0.5) -> int:
    """Count slowly, reporting progress at each step."""
    ctx = current_task()
    for done in range(1, to + 1):
        time.sleep(step_s)
        if ctx is not None:
            ctx.progress(done / to, {"done": done, "of": to})
    return to


@task("demo.limited", timeout=5.0, rate_limit="10/s")
def limited(value: object = None) -> object:
    """At most 10 starts a second, cluster-wide."""
    return value


@task("demo.render", timeout=60.0, group="gpu", result_ttl=3600)
def render(scene: str) -> str:
    """Runs on the nodes of group gpu; its result is kept for an hour."""
    ctx = current_task()
    return f"{scene} rendered on {ctx.node_id if ctx else '?'}"
