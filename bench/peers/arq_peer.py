"""arq 0.28 (asyncio, Redis).

Workers: 2 x ``arq bench.peers.arq_peer.WorkerSettings``: one process each,
``max_jobs=10`` (arq's default concurrency), ``keep_result`` default (3600 s).
One change from the defaults: ``poll_delay=0.01`` instead of 0.5 s — arq's
worker sleeps ``poll_delay`` between queue polls, so the default alone would put
~250 ms of idle wait on every W2 round trip (1,000 of them would take minutes).
The task bodies are coroutines (arq runs nothing else): ``sleep10`` is
``await asyncio.sleep(0.01)``.

Client: ``ArqRedis.enqueue_job`` (no bulk API) gathered 200 at a time on one
event loop; results with ``Job.result(poll_delay=0.01)`` per job in order
(W2: ``poll_delay=0.001``). L1/L3: a loop of ``await pool.enqueue_job(...)`` one
after another on one event loop; ``count`` increments the counter through the
worker's own ``ctx["redis"]``. Keys are only arguments.

arq 0.28 pins ``redis<6``; the venv has ringpool's redis 8.1, so arq is installed
with ``pip install --no-deps arq==0.28.0`` (it runs fine on redis-py 8).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from typing import Any, ClassVar

from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.jobs import Job

from bench import tasks
from bench.peers import WORKERS, Peer, WorkerProcess, bin_path, check_deadline, child_env, time_left

_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/3")
CHUNK = 200


async def noop(ctx: dict[str, Any]) -> None:
    return tasks.noop()


async def sleep10(ctx: dict[str, Any]) -> None:
    await asyncio.sleep(0.01)


async def incr(ctx: dict[str, Any], key: str) -> int:
    return tasks.incr(key)


async def count(ctx: dict[str, Any], url: str, counter: str) -> None:
    await ctx["redis"].incr(counter)


async def sleep10_count(ctx: dict[str, Any], url: str, counter: str) -> None:
    await asyncio.sleep(0.01)
    await ctx["redis"].incr(counter)


class WorkerSettings:
    functions: ClassVar[list[Any]] = [noop, sleep10, incr, count, sleep10_count]
    redis_settings = RedisSettings.from_dsn(_URL)
    max_jobs = 10
    poll_delay = 0.01


class ArqPeer(Peer):
    name = "arq"
    settings = "2 workers x max_jobs=10 (default), poll_delay=0.01 (default 0.5)"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._runner = asyncio.Runner()
        self._pool: ArqRedis | None = None

    def _run(self, coro: Any) -> Any:
        return self._runner.run(coro)

    @property
    def pool(self) -> ArqRedis:
        if self._pool is None:
            settings = dataclasses.replace(RedisSettings.from_dsn(self.redis_url),
                                           max_connections=CHUNK * 2)
            self._pool = self._run(create_pool(settings))
        return self._pool

    def start(self, timeout: float = 60.0) -> None:
        env = child_env({"BENCH_REDIS_URL": self.redis_url})
        for i in range(WORKERS):
            argv = [bin_path("arq"), "bench.peers.arq_peer.WorkerSettings"]
            self.workers.append(WorkerProcess(
                f"arq-{i}", argv, self.workdir / f"arq-{i}.log", env).start())
        self.wait_ready("Starting worker for", timeout)

    def stop(self) -> None:
        super().stop()
        if self._pool is not None:
            self._run(self._pool.aclose())
            self._pool = None
        self._runner.close()

    def submit_many(self, name: str, items: list[tuple[str, tuple[Any, ...]]],
                    options: dict[str, Any] | None = None) -> list[Any]:
        pool = self.pool

        async def go() -> list[Job]:
            jobs: list[Job] = []
            for i in range(0, len(items), CHUNK):
                chunk = items[i:i + CHUNK]
                got = await asyncio.gather(*(pool.enqueue_job(name, *args) for _, args in chunk))
                jobs.extend(j for j in got if j is not None)
            return jobs

        return list(self._run(go()))

    def wait_all(self, handles: list[Any], deadline: float) -> list[Any]:
        async def go() -> list[Any]:
            out: list[Any] = []
            for job in handles:
                left = time_left(deadline)
                if left <= 0:
                    break
                try:
                    out.append(await job.result(timeout=left, poll_delay=0.01))
                except TimeoutError:
                    break
            return out

        return list(self._run(go()))

    def submit_one(self, name: str, key: str, args: tuple[Any, ...]) -> None:
        self._run(self.pool.enqueue_job(name, *args))

    def submit_loop(self, name: str, items: list[tuple[str, tuple[Any, ...]]],
                    deadline: float) -> int:
        pool = self.pool

        async def go() -> int:
            for index, (_, args) in enumerate(items):
                if not index % 100 and time.monotonic() >= deadline:
                    return index
                await pool.enqueue_job(name, *args)
            return len(items)

        return int(self._run(go()))

    def round_trip(self, deadline: float) -> Any:
        pool = self.pool

        async def go() -> Any:
            job = await pool.enqueue_job("noop")
            assert job is not None
            left = check_deadline(deadline, "arq round trip")
            return await job.result(timeout=left, poll_delay=0.001)

        return self._run(go())

    def recover(self) -> None:
        self._run(self.pool.flushdb())
