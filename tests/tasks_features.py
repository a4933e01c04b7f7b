"""Tasks for the feature tests (progress, groups, rate limits, per-task result TTL), run on
real nodes and in the in-memory cluster.

A test steers a running task through a gate file: the task reports progress, then waits
while the file exists.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from typing import Any

from ringpool import InvalidProgress, Retry, current_task, task

GATE_WAIT_S = 20.0


def _context() -> Any:
    ctx = current_task()
    assert ctx is not None
    return ctx


def _wait_while(path: str) -> None:
    deadline = time.monotonic() + GATE_WAIT_S
    while os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)


@task("features.steps", timeout=30.0)
def steps(gate: str, total: int = 4) -> int:
    """Report progress step by step (fast, many times), then wait at the gate."""
    ctx = _context()
    for step in range(1, total + 1):
        for _ in range(200):  # far more reports than the node passes on
            ctx.progress(step / total, {"step": step})
    _wait_while(gate)
    return total


@task("features.steps_async", timeout=30.0)
async def steps_async(gate: str) -> str:
    _context().progress(0.5, {"phase": "async"})
    deadline = time.monotonic() + GATE_WAIT_S
    while os.path.exists(gate) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    return "async done"


@task("features.steps_cpu", timeout=30.0, kind="cpu")
def steps_cpu(gate: str) -> str:
    ctx = _context()
    for i in range(1000):
        ctx.progress(i / 1000)
    ctx.progress(0.75, {"phase": "cpu"})
    _wait_while(gate)
    return "cpu done"


@task("features.bad_progress", timeout=30.0)
def bad_progress(gate: str) -> list[str]:
    """Each bad report raises InvalidProgress and changes nothing; then a good one, and the
    task waits at the gate."""
    ctx = _context()
    refused = []
    for value, meta in ((math.nan, None), ("half", None), (True, None), (0.5, ["a list"]),
                        (0.5, {"x": {1, 2}}), (0.5, {"blob": "x" * 5000})):
        try:
            ctx.progress(value, meta)  # type: ignore[arg-type]
        except InvalidProgress as exc:
            refused.append(str(exc))
    ctx.progress(0.25, {"ok": True})
    _wait_while(gate)
    return refused


@task("features.where", timeout=10.0)
def where() -> str:
    return _context().node_id


@task("features.gpu_where", timeout=10.0, group="gpu")
def gpu_where() -> str:
    return _context().node_id


@task("features.gpu_retry", timeout=10.0, group="gpu", max_retries=2)
def gpu_retry() -> dict[str, object]:
    """Fails its first attempt (fired again by the coordinator), then says where it ran."""
    ctx = _context()
    if ctx.attempt == 1:
        raise Retry(countdown=0.1, reason="once more")
    return {"node": ctx.node_id, "attempt": ctx.attempt}


@task("features.limited", timeout=30.0, rate_limit="20/s", max_retries=0)
def limited(index: int) -> float:
    """When it started (unix seconds)."""
    return time.time()


@task("features.burst", timeout=30.0, max_retries=0)
def burst(index: int) -> float:
    """When it started (unix seconds); no declared limit (the tests set one live)."""
    return time.time()


@task("features.short_lived", timeout=10.0, result_ttl=2)
def short_lived(value: int) -> int:
    return value


@task("features.echo", timeout=10.0)
def echo(value: Any) -> Any:
    return value


@task("features.later", timeout=10.0, max_retries=3)
def later(message: str, countdown_s: float = 600.0) -> None:
    """Fails its first attempt and asks to run again ``countdown_s`` later."""
    raise Retry(countdown=countdown_s, reason=message)
