"""A token bucket for asyncio: ``await bucket.take(n)`` spends n tokens, waiting for them."""

from __future__ import annotations

import asyncio
import time


class TokenBucket:
    """``rate_per_s`` tokens a second, at most ``capacity`` saved up (the burst).

    The default capacity is a tenth of a second's worth (at least 1, at most 500),
    so a long run averages the rate closely while batches stay worth sending.
    """

    def __init__(self, rate_per_s: float, capacity: int | None = None) -> None:
        if rate_per_s <= 0:
            raise ValueError("rate must be > 0")
        self.rate_per_s = rate_per_s
        self.capacity = capacity or max(1, min(500, int(rate_per_s / 10)))
        self._tokens = float(self.capacity)
        self._stamp = time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate_per_s)
        self._stamp = now

    async def take(self, count: int = 1) -> None:
        if not 0 < count <= self.capacity:
            raise ValueError(f"can take 1..{self.capacity} tokens at once, not {count}")
        while True:
            self._refill()
            if self._tokens >= count:
                self._tokens -= count
                return
            await asyncio.sleep((count - self._tokens) / self.rate_per_s)
