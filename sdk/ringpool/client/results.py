"""Waiting for results without a connection or thread per handle.

Fast path: the node pushes the result on the stream the task came in on, and
``deliver`` sets the task's latch. When the task finished elsewhere (a retry, a
recovery, a broken stream), the node announces its id on this client's own done
channel (its envelopes carry the store's ``reply_to``); one subscription per client
settles the waiting latches from the task record, which stays the truth. A waiting
handle also re-reads its record every ``poll_s`` so that a missed announcement only
delays it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from typing import Any

from ringpool.client.latch import Latch
from ringpool.core import codec
from ringpool.core.protocol import TaskState
from ringpool.errors import ResultTimeout, TaskCancelled, TaskFailed, TaskNotFound
from ringpool.store.store import StateStore, TaskRecord
from ringpool.v1 import node_pb2 as pb

log = logging.getLogger(__name__)
FAST_PATH_WAIT_S = 0.5  # how long to trust the stream before asking Redis


def result_from_record(record: TaskRecord) -> pb.TaskResult | None:
    if record.state is TaskState.CANCELLED:
        return pb.TaskResult(task_id=record.task_id, state=pb.CANCELLED, node_id=record.node,
                             attempt=record.attempt)
    if record.state is TaskState.SUCCEEDED:
        return pb.TaskResult(task_id=record.task_id, state=pb.SUCCEEDED,
                             result=record.result or b"null", node_id=record.node,
                             attempt=record.attempt)
    if record.state is TaskState.FAILED:
        return pb.TaskResult(task_id=record.task_id, state=pb.FAILED,
                             error_type=record.error_type, error_message=record.error_message,
                             traceback=record.traceback, node_id=record.node,
                             attempt=record.attempt)
    return None


def unwrap(result: pb.TaskResult) -> Any:
    """The task's return value, TaskFailed with the remote error, or TaskCancelled."""
    if result.state == pb.SUCCEEDED:
        return codec.decode(result.result)
    if result.state == pb.CANCELLED:
        raise TaskCancelled(result.task_id)
    raise TaskFailed(result.task_id, result.error_type, result.error_message,
                     result.traceback, result.attempt)


class ResultWaiter:
    """The result latches of the tasks this client waits for (or may), by task id.

    Latches are made and set on the event loop; a latch lives as long as a handle
    (or an unsettled ticket) holds it.
    """

    def __init__(self, store: StateStore, poll_s: float) -> None:
        self.store = store
        self.poll_s = poll_s
        self._latches: weakref.WeakValueDictionary[str, Latch[pb.TaskResult]] = (
            weakref.WeakValueDictionary()
        )
        self._listener: asyncio.Task[None] | None = None

    def expect(self, task_id: str) -> Latch[pb.TaskResult]:
        """The latch of ``task_id``'s result (on the loop)."""
        latch = self._latches.get(task_id)
        if latch is None:
            latch = Latch()
            self._latches[task_id] = latch
        return latch

    def watch(self, task_id: str, latch: Latch[pb.TaskResult]) -> None:
        """Set ``latch`` with ``task_id``'s result too (on the loop)."""
        known = self._latches.get(task_id)
        if known is None or known.done:
            # A result already in is history (the task may have been replayed since):
            # a new watcher follows the task as it is now, from its record if need be.
            self._latches[task_id] = latch
        elif known is not latch:
            known.follow(latch)  # e.g. a duplicate of a task this client waits for already

    @property
    def listening(self) -> bool:
        """True once results have been missed on a stream and Redis is watched instead."""
        return self._listener is not None and not self._listener.done()

    def deliver(self, result: pb.TaskResult) -> None:
        latch = self._latches.get(result.task_id)
        if latch is not None:
            latch.set(result)

    async def wait(self, task_id: str, timeout: float | None) -> pb.TaskResult:
        latch = self.expect(task_id)
        if latch.done:
            return latch.get()
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        # Once we are listening, trust Redis at once: the stream already let us down.
        first = not self.listening
        while not latch.done:
            if not first:
                self._ensure_listener()
                await self._check_record(task_id)
                if latch.done:
                    break
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                raise ResultTimeout(f"no result for task {task_id} within {timeout}s")
            step = FAST_PATH_WAIT_S if first else self.poll_s
            first = False
            await latch.wait_async(step if remaining is None else min(step, remaining))
        return latch.get()

    async def _check_record(self, task_id: str) -> None:
        record = await self.store.record(task_id)
        if record is None:
            latch = self._latches.get(task_id)
            if latch is not None:
                latch.fail(TaskNotFound(f"no record for task {task_id}"))
            return
        result = result_from_record(record)
        if result is not None:
            self.deliver(result)

    async def _sweep(self) -> None:
        """Resolve every pending latch whose record is already final (pipelined reads)."""
        pending = [task_id for task_id, latch in list(self._latches.items()) if not latch.done]
        for start in range(0, len(pending), 500):
            chunk = pending[start : start + 500]
            for record in await self.store.records(chunk):
                result = result_from_record(record) if record is not None else None
                if result is not None:
                    self.deliver(result)

    def _ensure_listener(self) -> None:
        if self._listener is None or self._listener.done():
            self._listener = asyncio.create_task(self._listen())

    async def _listen(self) -> None:
        async def finished(task_id: str) -> None:
            if task_id in self._latches:
                await self._check_record(task_id)

        # The sweep after each subscription catches what finished while nobody listened.
        await self.store.watch_done(finished, self._sweep)

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
