"""The benchmark's task bodies, the same for every system.

* ``noop()`` — returns ``None`` (W1 throughput, W2 latency).
* ``sleep10()`` — ``time.sleep(0.01)``: an IO-bound task (W3). arq only runs
  coroutines, so its peer module wraps it as ``await asyncio.sleep(0.01)``.
* ``incr(key)`` — a per-key counter in the worker process's memory, no lock:
  returns the new count (W4 keyed state). Correct only when every task of a key
  runs in one process, one at a time.

This module imports nothing but the standard library, so a worker that forks per
job (RQ) pays no import cost for it. Each system registers these bodies its own
way in ``bench/peers/*`` — ringpool as tasks ``bench.noop``, ``bench.sleep10``
and ``bench.incr`` in ``bench.peers.ringpool_peer`` (the nodes' ``--tasks``
module).
"""

from __future__ import annotations

import time

COUNTS: dict[str, int] = {}


def noop() -> None:
    return None


def sleep10() -> None:
    time.sleep(0.01)


def incr(key: str) -> int:
    value = COUNTS.get(key, 0) + 1
    COUNTS[key] = value
    return value
