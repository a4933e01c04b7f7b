"""Test-only tasks whose failures an operator can switch off (used by tests/test_taskctl.py).

``flaky.gate(gate)`` fails while the Redis key ``flaky:gate:<gate>`` exists and
succeeds once it is deleted; each run counts itself in the hash
``flaky:runs:<gate>`` under its task id. The Redis client is made on first use
(from ``RINGPOOL_REDIS``, which the local launcher sets), never at import.
"""

from __future__ import annotations

import os
import threading

import redis

from sdk import current_task, task

_client: redis.Redis | None = None
_lock = threading.Lock()


def _redis() -> redis.Redis:
    global _client
    with _lock:
        if _client is None:
            _client = redis.Redis.from_url(os.environ["RINGPOOL_REDIS"])
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
