"""The task ``bench.periodic_failover`` schedules: each run appends its tick to a file."""

from __future__ import annotations

import time

from ringpool import current_task, task


@task("bench.tick", timeout=5.0)
def tick(path: str) -> float:
    """Appends ``<tick's eta> <task id> <start time>``; returns the eta."""
    ctx = current_task()
    assert ctx is not None
    started = time.time()
    with open(path, "a") as out:
        out.write(f"{ctx.eta!r} {ctx.task_id} {started!r}\n")
    return ctx.eta
