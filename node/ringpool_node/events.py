"""What the node reports as work moves through it: one seam for instrumentation.

The node, its execution, its state store and its config watch always hold a
``NodeEvents``; this one does nothing. ``NodeMetrics`` overrides the hooks
(Dramatiq's middleware shape), so no part of the node asks whether metrics are on.
Hooks run on the event loop: they must be quick and must not raise.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ringpool.store.events import StoreEvents
from ringpool.store.store import Recovery, TransitionOp
from ringpool.v1 import node_pb2 as pb


class NodeEvents(StoreEvents):
    def answered(self, envelopes: Sequence[pb.TaskEnvelope], acks: Sequence[pb.Ack]) -> None:
        """A batch was answered, ack by ack: accepted, duplicate or refused."""

    def queued(self, task_id: str) -> None:
        """An accepted task went to the pools."""

    def handed_back(self, task_id: str) -> None:
        """A queued task was withdrawn by a drain before it ran."""

    def recorded(self, outcomes: Iterable[tuple[str, TransitionOp]]) -> None:
        """Outcomes were written: (task name, op), op SUCCEED, RETRY or DEAD."""

    def stopped(self, name: str, cancelled: bool) -> None:
        """A run of task ``name`` was stopped here: its task was cancelled (True), or Redis
        no longer held it in flight for this node (False)."""

    def fenced(self, name: str) -> None:
        """An outcome of task ``name`` was dropped: the task is no longer this node's."""

    def reclaimed(self, recovery: Recovery) -> None:
        """Tasks this node accepted in an earlier life (before a restart or a lost session)
        went back to the retry set, or to the DLQ when recovered too often."""

    def config_applied(self, version: int) -> None:
        """Version ``version`` of the cluster config is in force."""

    def config_refused(self, version: int) -> None:
        """Version ``version`` of the cluster config was refused; the last good one stays."""
