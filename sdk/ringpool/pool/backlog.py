"""The queue of tickets waiting for a worker: highest priority first, FIFO within one."""

from __future__ import annotations

import heapq
import itertools

from ringpool.pool.job import Job, Ticket


class Backlog:
    """Not thread-safe: each tier guards it with its own lock (or its event loop)."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, Ticket]] = []
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, ticket: Ticket) -> None:
        heapq.heappush(self._heap, (-ticket.job.priority, next(self._seq), ticket))

    def pop(self) -> Ticket:
        return heapq.heappop(self._heap)[2]

    def remove(self, job: Job) -> Ticket | None:
        """Take out the ticket of ``job`` (a cancel), if it waits here."""
        for index, entry in enumerate(self._heap):
            if entry[2].job is job:
                self._heap[index] = self._heap[-1]
                self._heap.pop()
                heapq.heapify(self._heap)
                return entry[2]
        return None

    def drain(self) -> list[Ticket]:
        """Every waiting ticket, in the order they would have run; the backlog is left empty."""
        tickets = [entry[2] for entry in sorted(self._heap)]
        self._heap.clear()
        return tickets
