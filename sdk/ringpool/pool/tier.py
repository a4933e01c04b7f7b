"""``Tier``: what every tier of the pool keeps (io threads, cpu processes, async on the
loop): the middleware chain its jobs run through, the panic handler told of their
exceptions, and the counts of the jobs it took and refused and of how they ended."""

from __future__ import annotations

from ringpool.pool.job import PanicHandler
from ringpool.pool.middleware import Chain


class Tier:
    def __init__(self, chain: Chain | None, panic_handler: PanicHandler | None) -> None:
        self._chain = chain or Chain()
        self._panic = panic_handler
        self.submitted = 0
        self.completed = 0
        self.failed = 0
        self.rejected = 0
        self.timed_out = 0

    def _counts(self) -> dict[str, float]:
        """The counts, for the tier's ``stats()``."""
        return {
            "submitted": self.submitted,
            "completed": self.completed,
            "failed": self.failed,
            "rejected": self.rejected,
            "timed_out": self.timed_out,
        }
