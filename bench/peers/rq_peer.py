"""RQ 2.12 (Redis).

Workers: 2 x ``rq worker bench --url URL`` with RQ's default ``Worker`` class,
which forks a fresh work-horse process per job (RQ's documented model: one job
at a time per worker, isolation by fork). That fork also means a job cannot
keep state in worker memory: W4's in-memory counter restarts from zero on every
job.

Client: ``Queue.enqueue_many`` (one pipeline per 1,000 jobs: RQ's bulk API);
results with ``Job.latest_result(timeout=...)`` (a blocking read of the job's
result stream) in submission order. W2: ``queue.enqueue`` then
``latest_result``. L1/L3: a loop of ``queue.enqueue(count, ...)``. Keys are only
arguments.
"""

from __future__ import annotations

import math
from typing import Any

from redis import Redis
from rq import Queue
from rq.job import Job
from rq.results import Result

from bench import tasks
from bench.peers import (
    WORKERS,
    Peer,
    WorkerProcess,
    WorkloadTimeout,
    bin_path,
    child_env,
    time_left,
)

QUEUE = "bench"
CHUNK = 1_000
FUNCS = {"noop": tasks.noop, "sleep10": tasks.sleep10, "incr": tasks.incr,
         "count": tasks.count, "sleep10_count": tasks.sleep10_count}


class RqPeer(Peer):
    name = "rq"
    settings = "2 workers x default Worker (fork per job, 1 job at a time)"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.redis = Redis.from_url(self.redis_url)
        self.queue = Queue(QUEUE, connection=self.redis)

    def start(self, timeout: float = 60.0) -> None:
        env = child_env()
        for i in range(WORKERS):
            argv = [bin_path("rq"), "worker", QUEUE, "--url", self.redis_url,
                    "--name", f"bench-{i}"]
            self.workers.append(WorkerProcess(
                f"rq-{i}", argv, self.workdir / f"rq-{i}.log", env).start())
        self.wait_ready("Listening on", timeout)

    def submit_many(self, name: str, items: list[tuple[str, tuple[Any, ...]]],
                    options: dict[str, Any] | None = None) -> list[Any]:
        fn = FUNCS[name]
        jobs: list[Job] = []
        for i in range(0, len(items), CHUNK):
            jobs.extend(self.queue.enqueue_many([
                Queue.prepare_data(fn, args=args, result_ttl=3600)
                for _, args in items[i:i + CHUNK]
            ]))
        return jobs

    def _result(self, job: Job, deadline: float) -> Result | None:
        """The job's result, or None at the deadline."""
        while True:
            left = time_left(deadline)
            if left <= 0:
                return None
            # latest_result blocks in whole seconds; a non-blocking check first keeps
            # the deadline tight.
            result = job.latest_result() or job.latest_result(
                timeout=max(1, math.ceil(min(left, 1.0))))
            if result is None:
                continue
            if result.type != Result.Type.SUCCESSFUL:
                raise RuntimeError(f"rq job {job.id} failed: {result.exc_string}")
            return result

    def wait_all(self, handles: list[Any], deadline: float) -> list[Any]:
        out: list[Any] = []
        for job in handles:
            result = self._result(job, deadline)
            if result is None:
                break
            out.append(result.return_value)
        return out

    def submit_one(self, name: str, key: str, args: tuple[Any, ...]) -> None:
        self.queue.enqueue(FUNCS[name], *args, result_ttl=3600)

    def round_trip(self, deadline: float) -> Any:
        result = self._result(self.queue.enqueue(tasks.noop), deadline)
        if result is None:
            raise WorkloadTimeout("rq round trip: deadline passed")
        return result.return_value

    def recover(self) -> None:
        self.queue.empty()
