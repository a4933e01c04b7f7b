"""What the coordinator reports as it leads: one seam for instrumentation.

The retry firer, the recoverer and the DLQ retention always hold a
``CoordinatorEvents``; this one does nothing. ``CoordinatorMetrics`` overrides the
hooks (Dramatiq's middleware shape). Hooks run on the event loop: they must be quick
and must not raise.
"""

from __future__ import annotations

from ringpool.store.store import Recovery


class CoordinatorEvents:
    def leading(self, leading: bool) -> None:
        """This replica started (True) or stopped (False) leading."""

    def retries_claimed(self, lag_s: float) -> None:
        """A batch of due retries was claimed; the oldest was ``lag_s`` seconds late."""

    def retries_fired(self, count: int) -> None:
        """``count`` due retries were re-dispatched and accepted."""

    def retries_buried(self, count: int) -> None:
        """``count`` due retries were refused by their owner and moved to the DLQ."""

    def dead_node_recovered(self, recovery: Recovery) -> None:
        """A dead node's in-flight tasks went to the retry set (or, poisoned, to the DLQ)."""

    def dead_letters_expired(self, count: int) -> None:
        """``count`` dead letters older than the retention were removed."""
