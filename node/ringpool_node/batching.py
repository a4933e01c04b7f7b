"""Group commit: callers hand in items, one flush call carries everything queued.

While a flush is in flight, new items gather; the next flush takes them all
(up to ``max_items``). Under load, batches grow by themselves; when idle, an
item goes out at once with no added delay.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class GroupCommit(Generic[T, R]):
    def __init__(
        self, flush: Callable[[list[T]], Awaitable[Sequence[R]]], max_items: int = 500
    ) -> None:
        self._flush = flush
        self.max_items = max_items
        self._queue: deque[tuple[list[T], asyncio.Future[list[R]]]] = deque()
        self._runner: asyncio.Task[None] | None = None

    async def call(self, items: Sequence[T]) -> list[R]:
        """Results for ``items``, in order, from a shared flush."""
        if not items:
            return []
        future: asyncio.Future[list[R]] = asyncio.get_running_loop().create_future()
        self._queue.append((list(items), future))
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run())
        return await future

    async def _run(self) -> None:
        while self._queue:
            taken: list[tuple[list[T], asyncio.Future[list[R]]]] = []
            count = 0
            while self._queue and (not taken or count + len(self._queue[0][0]) <= self.max_items):
                group = self._queue.popleft()
                taken.append(group)
                count += len(group[0])
            batch = [item for items, _ in taken for item in items]
            try:
                results = list(await self._flush(batch))
            except Exception as exc:
                for _, future in taken:
                    if not future.done():
                        future.set_exception(exc)
                continue
            offset = 0
            for items, future in taken:
                if not future.done():
                    future.set_result(results[offset : offset + len(items)])
                offset += len(items)
