"""What the coordinator reports as it leads: one seam for instrumentation.

The due firers, the schedule ticker, the recoverer and the DLQ retention always hold a
``CoordinatorEvents``; this one does nothing. ``CoordinatorMetrics`` overrides the
hooks (Dramatiq's middleware shape). Hooks run on the event loop: they must be quick
and must not raise.
"""

from __future__ import annotations

from ringpool.store.store import Recovery, Waiting


class CoordinatorEvents:
    def leading(self, leading: bool) -> None:
        """This replica started (True) or stopped (False) leading."""

    def due_claimed(self, waiting: Waiting, lag_s: float) -> None:
        """A batch of due tasks of ``waiting`` (retries, or delayed tasks and schedule ticks)
        was claimed; the oldest was ``lag_s`` seconds late."""

    def due_fired(self, waiting: Waiting, count: int) -> None:
        """``count`` due tasks of ``waiting`` were dispatched and accepted."""

    def due_buried(self, waiting: Waiting, count: int) -> None:
        """``count`` due tasks of ``waiting`` were refused by their owner and moved to the DLQ."""

    def schedule_ticked(self, name: str, lag_s: float, skipped: int) -> None:
        """A tick of schedule ``name`` was claimed ``lag_s`` seconds after it fell due; an
        outage made it skip ``skipped`` earlier ticks."""

    def dead_node_recovered(self, recovery: Recovery) -> None:
        """A dead node's in-flight tasks went to the retry set (or, poisoned, to the DLQ)."""

    def dead_letters_expired(self, count: int) -> None:
        """``count`` dead letters older than the retention were removed."""
