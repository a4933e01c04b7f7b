"""Replays and purges the dashboard runs in the background, and what became of them.

A job selects its DLQ entries when it starts (ids named, or every entry matching a
filter, a page at a time), then replays or purges them with ``ringpool.ops.dlq``, the
same code ``taskctl dlq`` runs. A replay can be paced (a rate) and tried first as a
dry run, which selects and counts and changes nothing.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum

from ringpool.client.router import Router
from ringpool.ops import dlq as ops
from ringpool.ops.dlq import Tally
from ringpool.store.listing import Listed, TaskQuery
from ringpool.store.store import StateStore

log = logging.getLogger(__name__)
KEPT = 50  # finished jobs remembered
SHOWN = 20  # entries a dry run lists


class JobKind(StrEnum):
    REPLAY = "replay"
    DRY_RUN = "dry run"
    PURGE = "purge"


class JobState(StrEnum):
    #: Selecting entries or working through them.
    RUNNING = "running"
    #: Finished; the counts say how it went.
    DONE = "done"
    #: Stopped by an error (the counts say how far it got; run it again for the rest).
    FAILED = "failed"


@dataclass(frozen=True)
class Selection:
    """Named ids, or every DLQ entry matching a query."""

    task_ids: tuple[str, ...] = ()
    query: TaskQuery | None = None
    description: str = ""

    async def entries(self, store: StateStore) -> list[Listed]:
        if self.query is None:
            return await ops.select_ids(store, self.task_ids)
        return (await ops.select(store, self.query))[0]


@dataclass
class Job:
    id: int
    kind: JobKind
    selection: Selection
    rate_per_s: float | None = None
    state: JobState = JobState.RUNNING
    selected: int | None = None  # known once selection is done
    tally: Tally = field(default_factory=Tally)
    purged: int = 0
    sample: list[Listed] = field(default_factory=list)  # a dry run's first entries
    error: str = ""
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None

    @property
    def summary(self) -> str:
        if self.selected is None:
            return "selecting entries…"
        if self.kind is JobKind.DRY_RUN:
            eta = (f", about {self.selected / self.rate_per_s:.0f}s at {self.rate_per_s:g}/s"
                   if self.rate_per_s else "")
            return f"dry run: would replay {self.selected}{eta}; nothing changed"
        if self.kind is JobKind.PURGE:
            return f"purged {self.purged} of {self.selected}"
        return self.tally.line()


class Jobs:
    """The jobs of this dashboard process, newest first."""

    def __init__(self, store: StateStore, router: Callable[[], Awaitable[Router]]) -> None:
        self.store = store
        self._router = router
        self._jobs: OrderedDict[int, Job] = OrderedDict()
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()

    def get(self, job_id: int) -> Job | None:
        return self._jobs.get(job_id)

    def recent(self) -> list[Job]:
        return list(reversed(self._jobs.values()))

    def start(self, kind: JobKind, selection: Selection, rate_per_s: float | None = None) -> Job:
        job = Job(next(self._ids), kind, selection, rate_per_s)
        self._jobs[job.id] = job
        while len(self._jobs) > KEPT:
            oldest = next(iter(self._jobs.values()))
            if oldest.state is JobState.RUNNING:
                break
            self._jobs.popitem(last=False)
        task = asyncio.create_task(self._run(job), name=f"dashboard-job-{job.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    async def _run(self, job: Job) -> None:
        try:
            entries = await job.selection.entries(self.store)
            job.selected = job.tally.selected = len(entries)
            ids = [e.record.task_id for e in entries]
            if job.kind is JobKind.DRY_RUN:
                job.sample = entries[:SHOWN]
            elif job.kind is JobKind.PURGE:
                await ops.purge(self.store, ids, lambda removed: setattr(job, "purged", removed))
            elif ids:
                await ops.replay(self.store, await self._router(), ids, job.tally, job.rate_per_s)
            job.state = JobState.DONE
        except Exception as exc:
            log.warning("dashboard job %d (%s) failed: %s", job.id, job.kind, exc)
            job.error = str(exc) or type(exc).__name__
            job.state = JobState.FAILED
        finally:
            job.finished_at = time.time()
            job.tally.finished = job.tally.finished or time.monotonic()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
