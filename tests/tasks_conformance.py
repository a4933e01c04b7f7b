"""Tasks the conformance suite runs on an ``InMemoryCluster`` and on a ``LocalCluster``'s nodes.

What a test must see from inside a task goes through the task's result, or through a
file the test names (a node is another process on this machine): ``conformance.log``
appends a line per run, ``conformance.gate`` fails while its file exists.
"""

from __future__ import annotations

import asyncio
import os
import time

from ringpool import PermanentError, Retry, RetryPolicy, current_task, task

FAST = RetryPolicy(max_retries=2, base_s=0.05, factor=2.0, cap_s=0.2)


class Flaky(Exception):
    """A failure a retry may cure."""


def _attempt() -> int:
    ctx = current_task()
    assert ctx is not None
    return ctx.attempt


@task("conformance.add", timeout=5.0)
def add(a: int, b: int = 0) -> int:
    return a + b


@task("conformance.async_add", timeout=5.0)
async def async_add(a: int, b: int) -> int:
    await asyncio.sleep(0)
    return a + b


@task("conformance.square", timeout=30.0, kind="cpu")
def square(n: int) -> int:
    return n * n


@task("conformance.where", timeout=5.0)
def where() -> dict[str, object]:
    """Where and how this run happened."""
    ctx = current_task()
    assert ctx is not None
    return {"node": ctx.node_id, "key": ctx.key, "attempt": ctx.attempt,
            "headers": dict(ctx.headers), "eta": ctx.eta}


@task("conformance.log", timeout=5.0)
def log(path: str, line: str, sleep_s: float = 0.0) -> str:
    with open(path, "a") as out:
        out.write(f"{line}\n")
    time.sleep(sleep_s)
    return line


@task("conformance.fail_until", timeout=5.0, retry=FAST)
def fail_until(succeeding_attempt: int) -> int:
    if _attempt() < succeeding_attempt:
        raise Flaky(f"attempt {_attempt()} fails")
    return _attempt()


@task("conformance.always_fail", timeout=5.0, retry=FAST)
def always_fail(message: str) -> None:
    raise Flaky(message)


@task("conformance.permanent", timeout=5.0, retry=FAST)
def permanent(message: str) -> None:
    raise PermanentError(message)


@task("conformance.retry_later", timeout=5.0, retry=FAST)
def retry_later(countdown_s: float) -> int:
    if _attempt() == 1:
        raise Retry(countdown=countdown_s, reason="not yet")
    return _attempt()


@task("conformance.not_json", timeout=5.0)
def not_json() -> object:
    return {1, 2}


@task("conformance.gate", timeout=5.0, max_retries=0)
def gate(path: str) -> str:
    if os.path.exists(path):
        raise Flaky(f"gate {path} is closed")
    return "open"


@task("conformance.linger", timeout=60.0, max_retries=0)
def linger(path: str, seconds: float) -> str:
    """Runs until cancelled (or ``seconds``); writes ``<path>.started``, then
    ``<path>.cancelled`` when it sees ``ctx.cancelled``."""
    ctx = current_task()
    assert ctx is not None
    open(f"{path}.started", "w").close()
    if ctx.cancelled.wait(seconds):
        open(f"{path}.cancelled", "w").close()
        return "cancelled"
    return "done"


@task("conformance.linger_async", timeout=60.0, max_retries=0)
async def linger_async(path: str, seconds: float) -> str:
    """Sleeps ``seconds`` after writing ``<path>.started``; writes ``<path>.cancelled``
    when its coroutine is cancelled."""
    open(f"{path}.started", "w").close()
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        open(f"{path}.cancelled", "w").close()
        raise
    return "done"


@task("conformance.linger_cpu", timeout=60.0, max_retries=0, kind="cpu")
def linger_cpu(path: str, seconds: float) -> int:
    """Writes its process id to ``<path>.started`` and sleeps ``seconds``."""
    with open(f"{path}.started", "w") as out:
        out.write(str(os.getpid()))
    time.sleep(seconds)
    return os.getpid()


@task("conformance.tick", timeout=5.0)
def tick(path: str) -> float:
    """Appends the tick's due time and its task id to ``path``."""
    ctx = current_task()
    assert ctx is not None
    with open(path, "a") as out:
        out.write(f"{ctx.eta!r} {ctx.task_id}\n")
    return ctx.eta
