"""A simple bounded pool behind the facade the node uses (the dynamic pool replaces its insides)."""

from __future__ import annotations

import asyncio
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sdk.task import TaskContext, TaskDefinition, set_current_task


class PoolOverloaded(Exception):  # noqa: N818 - named for what the caller sees
    """No room in the pool right now; retry after ``retry_after_s``."""

    def __init__(self, retry_after_s: float = 0.05) -> None:
        super().__init__(f"pool is full; retry after {retry_after_s:.3f}s")
        self.retry_after_s = retry_after_s


@dataclass
class PoolSettings:
    min_workers: int = 4
    max_workers: int = 32
    max_queue: int = 10_000


@dataclass
class Job:
    task_id: str
    key: str
    definition: TaskDefinition[Any, Any]
    args: list[Any]
    kwargs: dict[str, Any]
    timeout_s: float
    context: TaskContext
    priority: int = 0
    ordered: bool = False


@dataclass
class Outcome:
    ok: bool
    value: Any = None
    error_type: str = ""
    error_message: str = ""
    traceback: str = ""
    timed_out: bool = False
    exception: BaseException | None = field(default=None, repr=False)


def _call(job: Job) -> Outcome:
    token = set_current_task(job.context)
    try:
        return Outcome(ok=True, value=job.definition.fn(*job.args, **job.kwargs))
    except Exception as exc:
        return Outcome(
            ok=False, error_type=type(exc).__name__, error_message=str(exc),
            traceback=traceback.format_exc(), exception=exc,
        )
    finally:
        set_current_task(None)
        del token


class Pools:
    def __init__(self, settings: PoolSettings | None = None) -> None:
        self.settings = settings or PoolSettings()
        self._threads = ThreadPoolExecutor(self.settings.max_workers, "ringpool-io")
        self._pending = 0

    def submit(self, job: Job) -> asyncio.Future[Outcome]:
        if self._pending >= self.settings.max_queue:
            raise PoolOverloaded()
        loop = asyncio.get_running_loop()
        self._pending += 1
        if job.definition.kind == "async":
            future: asyncio.Future[Outcome] = loop.create_task(self._run_async(job))
        else:
            future = asyncio.wrap_future(self._threads.submit(_call, job), loop=loop)
        future.add_done_callback(self._finished)
        return future

    def _finished(self, _: asyncio.Future[Outcome]) -> None:
        self._pending -= 1

    async def _run_async(self, job: Job) -> Outcome:
        set_current_task(job.context)
        try:
            value = await asyncio.wait_for(job.definition.fn(*job.args, **job.kwargs), job.timeout_s)
            return Outcome(ok=True, value=value)
        except TimeoutError as exc:
            return Outcome(ok=False, error_type="TaskTimeout", timed_out=True, exception=exc,
                           error_message=f"timed out after {job.timeout_s}s")
        except Exception as exc:
            return Outcome(ok=False, error_type=type(exc).__name__, error_message=str(exc),
                           traceback=traceback.format_exc(), exception=exc)

    def stats(self) -> dict[str, int]:
        return {"queued": self._pending}

    async def release(self, timeout: float) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._threads.shutdown, True)
