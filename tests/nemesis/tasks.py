"""The nemesis' task module: each execution writes its start and end to the history.

``nemesis.work`` succeeds after a short sleep, ``nemesis.fail`` always fails (and
ends in the DLQ once its retries are spent), ``nemesis.hang`` sleeps past its
timeout, ignoring the cancellation, and ends in the DLQ too. The history client is
made on first use from ``NEMESIS_HISTORY``, never at import.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from ringpool import RetryPolicy, current_task, task
from ringpool.task import TaskDefinition
from tests.nemesis.history import History

HISTORY_ENV = "NEMESIS_HISTORY"
FAST_RETRIES = RetryPolicy(max_retries=2, base_s=0.2, factor=2.0, cap_s=1.0)
WORK_TIMEOUT_S = 5.0
HANG_TIMEOUT_S = 1.0

_history: History | None = None
_lock = threading.Lock()


def _recorder() -> History:
    global _history
    with _lock:
        if _history is None:
            _history = History(os.environ[HISTORY_ENV])
        return _history


class PlannedFailure(Exception):
    """The failure ``nemesis.fail`` was sent to have."""


@contextmanager
def execution() -> Iterator[None]:
    """Record this run's start, then its end with the outcome (an exception's type)."""
    ctx = current_task()
    assert ctx is not None, "a nemesis task runs on a node"
    history, run = _recorder(), uuid.uuid4().hex[:12]
    history.event(ev="start", run=run, task=ctx.task_id, node=ctx.node_id, pid=os.getpid(),
                  key=ctx.key, attempt=ctx.attempt, t=time.time())
    outcome = "ok"
    try:
        yield
    except BaseException as exc:
        outcome = type(exc).__name__
        raise
    finally:
        history.event(ev="end", run=run, task=ctx.task_id, t=time.time(), outcome=outcome)


@task("nemesis.work", timeout=WORK_TIMEOUT_S, retry=FAST_RETRIES)
def work(sleep_s: float) -> str:
    with execution():
        time.sleep(sleep_s)
    return "done"


@task("nemesis.fail", timeout=WORK_TIMEOUT_S, retry=FAST_RETRIES)
def fail(reason: str) -> None:
    with execution():
        raise PlannedFailure(reason)


@task("nemesis.hang", timeout=HANG_TIMEOUT_S, retry=replace(FAST_RETRIES, max_retries=1))
def hang(hang_s: float) -> str:
    with execution():
        time.sleep(hang_s)  # past the timeout, deaf to ctx.cancelled: a hung call
    return "woke up"


#: The workload's kinds of task, by the name the history records.
TASKS: dict[str, TaskDefinition[Any, Any]] = {"work": work, "fail": fail, "hang": hang}
