"""Celery 5.7 on Redis (broker and result backend), JSON serializer.

Workers: 2 x ``celery -A bench.peers.celery_peer worker -P prefork -c 2
--without-gossip --without-mingle --without-heartbeat -Q bench -n bN@%h``
at Celery's default log level (WARNING: no log line per task).
``-P prefork -c 2`` is Celery's default pool and default concurrency
(the CPU count, 2 here), so 4 executing processes in all; prefetch multiplier
left at its default (4). Gossip/mingle/heartbeat off, as Celery's optimizing
guide recommends for Redis brokers (they only add chatter).

Client: W1/W3/W4 send ``group(...)`` of 1,000 at a time (``group.apply_async``:
one producer, one message per task; Celery has no multi-message publish) and
wait with ``AsyncResult.get`` per task in order (the Redis backend's pub/sub
result consumer).
W2: ``noop.delay().get()``. L1/L3: a loop of ``count.delay(...)``. Keys are only
arguments: Celery routes by queue, not by key.
"""

from __future__ import annotations

import os
import time
from typing import Any

from celery import Celery, group, signals
from celery.exceptions import TimeoutError as CeleryTimeout

from bench import tasks
from bench.peers import WORKERS, Peer, WorkerProcess, bin_path, check_deadline, child_env, time_left

QUEUE = "bench"
_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/1")

app = Celery("bench", broker=_URL, backend=_URL)
app.conf.update(
    task_serializer="json", result_serializer="json", accept_content=["json"],
    task_default_queue=QUEUE, result_expires=3600, worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)


@app.task(name="bench.noop")
def noop() -> None:
    return tasks.noop()


@app.task(name="bench.sleep10")
def sleep10() -> None:
    return tasks.sleep10()


@app.task(name="bench.incr")
def incr(key: str) -> int:
    return tasks.incr(key)


@app.task(name="bench.count")
def count(url: str, counter: str) -> None:
    return tasks.count(url, counter)


@app.task(name="bench.sleep10_count")
def sleep10_count(url: str, counter: str) -> None:
    return tasks.sleep10_count(url, counter)


TASKS = {"noop": noop, "sleep10": sleep10, "incr": incr, "count": count,
         "sleep10_count": sleep10_count}
READY = "bench celery worker ready"


@signals.worker_ready.connect
def _announce_ready(**_: Any) -> None:
    # Workers log at Celery's default level (WARNING: no line per task), so the
    # readiness line the harness waits for is printed here.
    print(READY, flush=True)


class CeleryPeer(Peer):
    name = "celery"
    settings = "2 workers x prefork -c 2 (default = CPUs), prefetch 4, Redis broker+backend"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        app.conf.update(broker_url=self.redis_url, result_backend=self.redis_url)

    def start(self, timeout: float = 60.0) -> None:
        env = child_env({"BENCH_REDIS_URL": self.redis_url})
        for i in range(WORKERS):
            argv = [bin_path("celery"), "-A", "bench.peers.celery_peer", "worker",
                    "-P", "prefork", "-c", "2", "--without-gossip", "--without-mingle",
                    "--without-heartbeat", "-Q", QUEUE, "-n", f"b{i}@%h"]
            self.workers.append(
                WorkerProcess(f"celery-{i}", argv, self.workdir / f"celery-{i}.log", env).start()
            )
        self.wait_ready(READY, timeout)

    def submit_many(self, name: str, items: list[tuple[str, tuple[Any, ...]]],
                    options: dict[str, Any] | None = None) -> list[Any]:
        fn = TASKS[name]
        return list(group(fn.s(*args) for _, args in items).apply_async().results)

    def wait_all(self, handles: list[Any], deadline: float) -> list[Any]:
        out: list[Any] = []
        for handle in handles:
            left = time_left(deadline)
            if left <= 0:
                break
            try:
                out.append(handle.get(timeout=left, interval=0.01))
            except CeleryTimeout:
                break
        return out

    def submit_one(self, name: str, key: str, args: tuple[Any, ...]) -> None:
        TASKS[name].delay(*args)

    def round_trip(self, deadline: float) -> Any:
        return noop.delay().get(timeout=check_deadline(deadline, "celery round trip"),
                                interval=0.001)

    def recover(self) -> None:
        app.control.purge()
        time.sleep(0.5)
