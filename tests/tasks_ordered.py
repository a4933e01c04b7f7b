"""Tasks for the ordered-handoff tests: each run appends its start and end (task id, node,
wall time) to a log file the test names, and may wait at a gate file the test removes."""

from __future__ import annotations

import json
import os
import time
from typing import Any

from ringpool import current_task, task

GATE_WAIT_S = 60.0


def _note(log: str, event: str) -> None:
    ctx = current_task()
    assert ctx is not None
    line = json.dumps({"ev": event, "task": ctx.task_id, "node": ctx.node_id, "t": time.time()})
    with open(log, "a") as out:  # one short append: whole lines, whichever process writes
        out.write(line + "\n")


@task("ordered.step", timeout=90.0, max_retries=0, ordered=True)
def step(log: str, gate: str = "") -> str:
    """Note the start, wait while ``gate`` exists (up to ``GATE_WAIT_S``), note the end."""
    _note(log, "start")
    deadline = time.monotonic() + GATE_WAIT_S
    while gate and os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.01)
    _note(log, "end")
    return "done"


def runs(log: str) -> dict[str, dict[str, Any]]:
    """Task id -> its run's ``start`` and ``end`` times and ``node``, as logged so far."""
    found: dict[str, dict[str, Any]] = {}
    if not os.path.exists(log):
        return found
    with open(log) as lines:
        for line in lines:
            entry = json.loads(line)
            run = found.setdefault(entry["task"], {"node": entry["node"]})
            run[entry["ev"]] = entry["t"]
    return found
