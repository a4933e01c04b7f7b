"""Dramatiq 2.2 on Redis (``RedisBroker``) with the ``Results`` middleware (``RedisBackend``).

Workers: 2 x ``dramatiq bench.peers.dramatiq_peer -p 1 -t 8``: one worker
process each (2 in all, the budget) with Dramatiq's default 8 worker threads
(its CLI default is ``--processes`` = CPUs, ``--threads 8``). Default
middleware plus ``Results``; actors have ``max_retries=0`` and
``store_results=True``.

Client: W1/W3/W4 ``group(messages).run()`` 1,000 at a time (one enqueue script
call per message: the Redis broker has no bulk enqueue) and
``Message.get_result(block=True)`` per message in order (a blocking pop on its
result key). W2:
``actor.send()`` then ``message.get_result(block=True)``. L1/L3: a loop of
``count.send(...)``. Keys are only arguments.
"""

from __future__ import annotations

import os
from typing import Any

import dramatiq
from dramatiq import group
from dramatiq.brokers.redis import RedisBroker
from dramatiq.results import Results, ResultTimeout
from dramatiq.results.backends.redis import RedisBackend

from bench import tasks
from bench.peers import WORKERS, Peer, WorkerProcess, bin_path, check_deadline, child_env, time_left

_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/2")

broker = RedisBroker(url=_URL)
backend = RedisBackend(url=_URL)
broker.add_middleware(Results(backend=backend))
dramatiq.set_broker(broker)


@dramatiq.actor(actor_name="bench_noop", max_retries=0, store_results=True)
def noop() -> None:
    return tasks.noop()


@dramatiq.actor(actor_name="bench_sleep10", max_retries=0, store_results=True)
def sleep10() -> None:
    return tasks.sleep10()


@dramatiq.actor(actor_name="bench_incr", max_retries=0, store_results=True)
def incr(key: str) -> int:
    return tasks.incr(key)


@dramatiq.actor(actor_name="bench_count", max_retries=0)
def count(url: str, counter: str) -> None:
    return tasks.count(url, counter)


@dramatiq.actor(actor_name="bench_sleep10_count", max_retries=0)
def sleep10_count(url: str, counter: str) -> None:
    return tasks.sleep10_count(url, counter)


ACTORS = {"noop": noop, "sleep10": sleep10, "incr": incr, "count": count,
          "sleep10_count": sleep10_count}


class DramatiqPeer(Peer):
    name = "dramatiq"
    settings = "2 workers x -p 1 -t 8 (default threads), Redis broker + Results(RedisBackend)"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.redis_url != _URL:
            raise RuntimeError("set BENCH_REDIS_URL before importing bench.peers.dramatiq_peer")

    def start(self, timeout: float = 60.0) -> None:
        env = child_env({"BENCH_REDIS_URL": self.redis_url})
        for i in range(WORKERS):
            argv = [bin_path("dramatiq"), "bench.peers.dramatiq_peer", "-p", "1", "-t", "8"]
            self.workers.append(WorkerProcess(
                f"dramatiq-{i}", argv, self.workdir / f"dramatiq-{i}.log", env).start())
        self.wait_ready("ready for action", timeout)

    def submit_many(self, name: str, items: list[tuple[str, tuple[Any, ...]]],
                    options: dict[str, Any] | None = None) -> list[Any]:
        actor = ACTORS[name]
        g = group([actor.message(*args) for _, args in items], broker=broker).run()
        return list(g.children)

    def wait_all(self, handles: list[Any], deadline: float) -> list[Any]:
        out: list[Any] = []
        for message in handles:
            left_ms = int(time_left(deadline) * 1000)
            if left_ms <= 0:
                break
            try:
                out.append(message.get_result(backend=backend, block=True, timeout=left_ms))
            except ResultTimeout:
                break
        return out

    def submit_one(self, name: str, key: str, args: tuple[Any, ...]) -> None:
        ACTORS[name].send(*args)

    def round_trip(self, deadline: float) -> Any:
        left_ms = int(check_deadline(deadline, "dramatiq round trip") * 1000)
        return noop.send().get_result(backend=backend, block=True, timeout=max(1, left_ms))

    def recover(self) -> None:
        broker.flush_all()
