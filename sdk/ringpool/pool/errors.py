"""The pool's errors, all under ``ringpool.errors.RingpoolError``.

    RingpoolError
    ├── PoolOverloaded     no room in the tier right now; carries ``retry_after_s``
    ├── PoolClosed         the pool is released; it accepts nothing more
    └── TaskTimeout        a task passed its deadline (an ``Outcome``'s exception)

Bad settings and ``tune()`` values raise ``ringpool.errors.ConfigError``; a job with a
bad field raises ``ringpool.errors.InvalidTask``.
"""

from __future__ import annotations

from ringpool.errors import RingpoolError


class PoolOverloaded(RingpoolError):
    """No room in the pool right now; retry after ``retry_after_s``."""

    def __init__(self, retry_after_s: float = 0.05) -> None:
        super().__init__(f"pool is full; retry after {retry_after_s:.3f}s")
        self.retry_after_s = retry_after_s


class PoolClosed(RingpoolError):
    """The pool was released and accepts no more work."""


class TaskTimeout(RingpoolError):
    """The task ran past its timeout; its result, if any comes, is dropped."""
