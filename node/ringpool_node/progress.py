"""Pass running tasks' progress on, throttled: to the submitter's stream, and to the record.

A task may call ``current_task().progress(...)`` as often as it likes, from any thread
(a cpu task's reports come over its process's pipe): each call only keeps the latest
report. One flusher on the event loop wakes every ``push_interval_s`` while reports
come in. It pushes each task's newest report on its submitter's stream when that is
open, and writes the record (one fenced script call for the whole node) when no
stream is open, and at most every ``record_interval_s`` otherwise, so ``taskctl task
show`` and other clients see it too. The flusher stops when every report is out.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Container
from dataclasses import dataclass

from ringpool.core import progress as wire
from ringpool.store.store import StateStore
from ringpool.task import TaskProgress
from ringpool_node.events import NodeEvents
from ringpool_node.streams import ClientStream

log = logging.getLogger(__name__)

PUSH_INTERVAL_S = 0.2
RECORD_INTERVAL_S = 1.0


@dataclass(slots=True)
class _Report:
    progress: TaskProgress
    epoch: int
    stream: ClientStream | None


@dataclass(slots=True)
class _Sent:
    pushed: TaskProgress | None = None
    recorded: TaskProgress | None = None
    recorded_at: float = 0.0  # monotonic


class ProgressRelay:
    def __init__(self, node_id: str, store: StateStore, running: Container[str],
                 events: NodeEvents | None = None, push_interval_s: float = PUSH_INTERVAL_S,
                 record_interval_s: float = RECORD_INTERVAL_S) -> None:
        self.node_id = node_id
        self.store = store
        self.events = events or NodeEvents()
        self.push_interval_s = push_interval_s
        self.record_interval_s = record_interval_s
        self._running = running  # ids of the tasks the node has on its hands
        # Written from any thread (one dict store per report), read by the flusher.
        self._latest: dict[str, _Report] = {}
        self._sent: dict[str, _Sent] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._awake = False
        self._flusher: asyncio.Task[None] | None = None

    def hook(self, task_id: str, epoch: int, stream: ClientStream | None
             ) -> Callable[[TaskProgress], None]:
        """What a task's context calls with each report (call on the event loop)."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return functools.partial(self.report, task_id, epoch, stream)

    def report(self, task_id: str, epoch: int, stream: ClientStream | None,
               progress: TaskProgress) -> None:
        """Keep ``progress`` as the task's latest; from any thread."""
        self._latest[task_id] = _Report(progress, epoch, stream)
        if not self._awake and self._loop is not None:
            self._awake = True
            with contextlib.suppress(RuntimeError):  # the loop closed: the node is gone
                self._loop.call_soon_threadsafe(self._wake)

    def forget(self, task_id: str) -> None:
        """The task is off the node's hands: nothing more of it goes out."""
        self._latest.pop(task_id, None)
        self._sent.pop(task_id, None)

    def _wake(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.push_interval_s)
            try:
                await self.flush()
            except Exception as exc:  # Redis away: the next report tries again
                log.warning("recording progress failed: %s", exc)
            self._awake = False
            if not self._unsent():
                return
            self._awake = True  # a report came (or is still due) while we looked

    def _unsent(self) -> bool:
        """Whether some report has not reached the record yet."""
        for task_id, report in list(self._latest.items()):
            sent = self._sent.get(task_id)
            if sent is None or report.progress is not sent.recorded:
                return True
        return False

    async def flush(self) -> None:
        """Push and record what changed; forget tasks that are off the node's hands."""
        now = time.monotonic()
        pushed = 0
        to_record: dict[int, list[tuple[str, TaskProgress]]] = {}
        recorded: list[tuple[_Sent, TaskProgress]] = []
        for task_id, report in list(self._latest.items()):
            if task_id not in self._running:
                self._latest.pop(task_id, None)
                self._sent.pop(task_id, None)
                continue
            sent = self._sent.get(task_id)
            if sent is None:
                sent = self._sent[task_id] = _Sent()
            progress, stream = report.progress, report.stream
            streaming = stream is not None and stream.open
            if streaming and progress is not sent.pushed:
                assert stream is not None
                streaming = stream.push_progress(wire.to_wire(task_id, progress))
                if streaming:
                    sent.pushed = progress
                    pushed += 1
            if progress is not sent.recorded and (
                    not streaming or now - sent.recorded_at >= self.record_interval_s):
                to_record.setdefault(report.epoch, []).append((task_id, progress))
                recorded.append((sent, progress))
        written = 0
        for epoch, reports in to_record.items():
            written += await self.store.record_progress(self.node_id, epoch, reports)
        for sent, progress in recorded:
            sent.recorded, sent.recorded_at = progress, now
        self.events.progress_passed(pushed, written)
