"""The run's history: what the workload had accepted and every execution the nodes ran.

It lives in a Redis of its own (AOF, ``appendfsync always``) that no fault touches,
so the history outlives every crash of the system under test. Keys:

    nemesis:accepted   hash  task id -> JSON {key, kind, ordered, at, took}: accepted tasks
    nemesis:refused    hash  exception type -> count: dispatches that were refused
    nemesis:runs       list  JSON events, one per execution start and one per end:
                             {ev: "start"|"end", run, task, node, pid, key, attempt, t,
                              outcome ("ok" or the exception's type, on "end")}

A run without an "end" event was cut short: its process died (``kill -9``) or it
is still running. Times are ``time.time()`` on this one host.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis

ACCEPTED = "nemesis:accepted"
REFUSED = "nemesis:refused"
RUNS = "nemesis:runs"


@dataclass(frozen=True)
class Accepted:
    """A task the workload saw durably accepted."""

    task_id: str
    key: str
    kind: str  # "work", "fail" or "hang"
    ordered: bool
    at: float  # when dispatch returned it accepted
    took_s: float = 0.0  # how long that dispatch took


@dataclass
class Run:
    """One execution of a task on one node process (``end`` None: cut short or running)."""

    run_id: str
    task_id: str
    node: str
    pid: int
    key: str
    attempt: int
    start: float
    end: float | None = None
    outcome: str = ""


class History:
    """Reads and writes of one run's history Redis."""

    def __init__(self, url: str) -> None:
        self.redis = redis.Redis.from_url(url, decode_responses=True)

    def close(self) -> None:
        self.redis.close()

    # -- written by the workload and by the tasks ----------------------------------

    def accepted(self, task: Accepted) -> None:
        fields = {"key": task.key, "kind": task.kind, "ordered": task.ordered, "at": task.at,
                  "took": task.took_s}
        self.redis.hset(ACCEPTED, task.task_id, json.dumps(fields))

    def refused(self, error: BaseException) -> None:
        self.redis.hincrby(REFUSED, type(error).__name__, 1)

    def event(self, **fields: Any) -> None:
        self.redis.rpush(RUNS, json.dumps(fields))

    # -- read by the checker -------------------------------------------------------

    def accepted_tasks(self) -> dict[str, Accepted]:
        tasks = {}
        for raw_id, raw in self.redis.hgetall(ACCEPTED).items():
            fields, task_id = json.loads(raw), str(raw_id)
            tasks[task_id] = Accepted(task_id, fields["key"], fields["kind"], fields["ordered"],
                                      fields["at"], fields["took"])
        return tasks

    def refusals(self) -> dict[str, int]:
        return {str(k): int(v) for k, v in self.redis.hgetall(REFUSED).items()}

    def runs(self) -> list[Run]:
        """Every execution in start order, each with its end when one was recorded."""
        runs: dict[str, Run] = {}
        for raw in self.redis.lrange(RUNS, 0, -1):
            event = json.loads(raw)
            if event["ev"] == "start":
                runs[event["run"]] = Run(event["run"], event["task"], event["node"], event["pid"],
                                         event["key"], event["attempt"], event["t"])
            elif event["run"] in runs:
                runs[event["run"]].end = event["t"]
                runs[event["run"]].outcome = event["outcome"]
        return sorted(runs.values(), key=lambda run: run.start)
