"""Per-key order: ordered jobs of one key run one at a time, in arrival order.

A key is present while one of its ordered jobs is in a tier; later ones wait here
and go to the tier as their predecessor finishes. Other keys never wait on them.
Used from the event loop only.
"""

from __future__ import annotations

from collections import deque

from ringpool.pool.job import Job, Ticket


class KeyOrder:
    def __init__(self) -> None:
        self._keys: dict[str, deque[Ticket]] = {}
        self.waiting = 0

    def admit(self, ticket: Ticket) -> bool:
        """True when ``ticket`` may run now; otherwise it waits behind its key."""
        line = self._keys.get(ticket.job.key)
        if line is None:
            self._keys[ticket.job.key] = deque()
            return True
        line.append(ticket)
        self.waiting += 1
        return False

    def next(self, key: str) -> Ticket | None:
        """The key's running job finished (or was refused): the next to run, if any."""
        line = self._keys[key]
        if not line:
            del self._keys[key]
            return None
        self.waiting -= 1
        return line.popleft()

    def remove(self, job: Job) -> Ticket | None:
        """Take out the ticket of ``job`` (a cancel) if it waits behind its key."""
        line = self._keys.get(job.key)
        if line is None:
            return None
        for ticket in line:
            if ticket.job is job:
                line.remove(ticket)
                self.waiting -= 1
                return ticket
        return None

    def drain(self) -> list[Ticket]:
        """Remove and return every waiting ticket."""
        left = [ticket for line in self._keys.values() for ticket in line]
        self._keys.clear()
        self.waiting = 0
        return left
