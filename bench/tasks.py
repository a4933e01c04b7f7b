"""The benchmark's task bodies, the same for every system.

* ``noop()`` — returns ``None`` (W1 throughput, W2 latency).
* ``sleep10()`` — ``time.sleep(0.01)``: an IO-bound task (W3). arq only runs
  coroutines, so its peer module wraps it as ``await asyncio.sleep(0.01)``.
* ``incr(key)`` — a per-key counter in the worker process's memory, no lock:
  returns the new count (W4 keyed state). Correct only when every task of a key
  runs in one process, one at a time.
* ``count(redis_url, counter)`` — a no-op that counts itself: ``INCR counter`` in
  the system's Redis (the loop workloads L1 count completions this way, with no
  result read); ``sleep10_count`` sleeps 10 ms first (L3).

This module imports nothing but the standard library at import (``count`` imports
redis-py on first use), so a worker that forks per job (RQ) pays no import cost
for it. Each system registers these bodies its own
way in ``bench/peers/*`` — ringpool as tasks ``bench.noop``, ``bench.sleep10``
and ``bench.incr`` in ``bench.peers.ringpool_peer`` (the nodes' ``--tasks``
module).
"""

from __future__ import annotations

import os
import time
from typing import Any

COUNTS: dict[str, int] = {}
_clients: dict[tuple[int, str], Any] = {}  # (pid, url) -> redis client: none crosses a fork


def noop() -> None:
    return None


def sleep10() -> None:
    time.sleep(0.01)


def incr(key: str) -> int:
    value = COUNTS.get(key, 0) + 1
    COUNTS[key] = value
    return value


def _redis(url: str) -> Any:
    client = _clients.get((os.getpid(), url))
    if client is None:
        import redis

        client = _clients[(os.getpid(), url)] = redis.Redis.from_url(url)
    return client


def count(redis_url: str, counter: str) -> None:
    _redis(redis_url).incr(counter)


def sleep10_count(redis_url: str, counter: str) -> None:
    time.sleep(0.01)
    _redis(redis_url).incr(counter)
