"""Test-only tasks that report each run to Redis, and fail when told to.

``probe.run(tag)`` counts each run per task id in ``probe:runs:<tag>``, logs
which node started it in ``probe:log:<tag>`` and says so in its result;
``probe.fail_times(tag, n)`` fails its first ``n`` attempts and logs each
attempt's start time in ``probe:attempts:<task id>``; ``probe.blob(n)`` returns
``n`` characters; ``probe.exit`` and ``probe.cancelled`` leave by ``SystemExit`` and by a
``CancelledError`` nobody asked for.

``flaky.gate(gate)`` fails while the Redis key ``flaky:gate:<gate>`` exists and
succeeds once it is deleted; each run counts itself in the hash
``flaky:runs:<gate>`` under its task id. The Redis client is made on first use
(from ``PROBE_REDIS`` if set, else ``RINGPOOL_REDIS``, which the local launcher sets),
never at import.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time

import redis

from ringpool import RetryPolicy, current_task, task
from tests.helpers import redis_client

_client: redis.Redis | None = None
_lock = threading.Lock()


def _redis() -> redis.Redis:
    global _client
    with _lock:
        if _client is None:
            _client = redis_client(os.environ.get("PROBE_REDIS") or os.environ["RINGPOOL_REDIS"])
        return _client


def gate_key(gate: str) -> str:
    return f"flaky:gate:{gate}"


def runs_key(gate: str) -> str:
    return f"flaky:runs:{gate}"


class GateClosed(Exception):
    """The gate is still set: this run fails on purpose."""


@task("flaky.gate", timeout=10.0, max_retries=0)
def gate(name: str) -> str:
    ctx = current_task()
    client = _redis()
    client.hincrby(runs_key(name), ctx.task_id if ctx else "?", 1)
    if client.exists(gate_key(name)):
        raise GateClosed(f"gate {name} is closed")
    return "ok"


def probe_runs_key(tag: str) -> str:
    return f"probe:runs:{tag}"


def probe_log_key(tag: str) -> str:
    """List of "<node> <task id>" for every run, in start order."""
    return f"probe:log:{tag}"


@task("probe.run", timeout=60.0, max_retries=3)
def probe_run(tag: str, sleep_s: float = 0.0) -> dict[str, object]:
    ctx = current_task()
    task_id = ctx.task_id if ctx else "?"
    node = ctx.node_id if ctx else ""
    with _redis().pipeline(transaction=False) as pipe:
        pipe.hincrby(probe_runs_key(tag), task_id, 1)
        pipe.rpush(probe_log_key(tag), f"{node} {task_id}")
        pipe.execute()
    if sleep_s:
        time.sleep(sleep_s)
    return {"node": ctx.node_id if ctx else "", "task_id": task_id, "key": ctx.key if ctx else ""}


class PlannedFailure(Exception):
    """A failure the test asked for."""


@task("probe.fail_times", timeout=10.0, max_retries=3,
      retry=RetryPolicy(max_retries=3, base_s=0.2, factor=2.0, cap_s=5.0))
def probe_fail_times(tag: str, failures: int) -> int:
    ctx = current_task()
    assert ctx is not None
    _redis().rpush(f"probe:attempts:{ctx.task_id}", f"{ctx.attempt}:{time.time()}")
    if ctx.attempt <= failures:
        raise PlannedFailure(f"attempt {ctx.attempt} of {tag} fails as planned")
    return ctx.attempt


@task("probe.blob", timeout=10.0)
def probe_blob(size: int) -> str:
    """A result of ``size`` characters: for tests of what a node holds for its clients."""
    return "x" * size


@task("probe.exit", timeout=10.0, max_retries=0)
def probe_exit(code: int) -> None:
    """Calls sys.exit inside the task: a failure of the task, never of its worker."""
    raise SystemExit(code)


@task("probe.cancelled", timeout=10.0, max_retries=0)
async def probe_cancelled() -> None:
    """An async task out of which a CancelledError escapes that nobody asked for."""
    waited: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(waited.cancel)
    await waited
