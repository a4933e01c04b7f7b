"""``Ticket``: what the client keeps of one task from dispatch until its owner answers.

A ticket is made on the caller's thread (the envelope is already validated), then
only the event loop touches it: the Router routes it, resends it and settles it.
Its ``accepted`` latch ends as the task's id (an earlier task's, for a duplicate)
or the refusal; its ``result`` latch as its result, or the same refusal (a waiter
for the result wakes once, whichever comes).
"""

from __future__ import annotations

import itertools
import weakref
from typing import TYPE_CHECKING

from ringpool.client.latch import Latch
from ringpool.errors import RingpoolError
from ringpool.task import Task
from ringpool.v1 import node_pb2 as pb

if TYPE_CHECKING:
    from ringpool.client.links import Link
    from ringpool.client.metrics import CallTimer

FIRST_BACKOFF_S = 0.02
MAX_BACKOFF_S = 1.0
ENVELOPE_OVERHEAD_BYTES = 64  # counted per task besides its key, name, payload and headers

_sequence = itertools.count(1)  # next() on a count is atomic: callers on any thread


class Ticket:
    __slots__ = (
        "accepted", "ack", "backoff_s", "deadline", "envelope", "holder", "hops", "key",
        "link", "ordered", "problem", "result", "sent_version", "seq", "size", "task",
        "task_id", "timer",
    )

    def __init__(
        self, envelope: pb.TaskEnvelope, key: str, task: Task | None = None,
        timer: CallTimer | None = None,
    ) -> None:
        self.envelope = envelope
        self.task_id: str = envelope.task_id
        self.key = key
        self.task = task  # what the application dispatched (for on_refused), if it was one
        self.ordered = envelope.ordered
        self.size = (len(envelope.payload) + len(key) + len(envelope.name)
                     + ENVELOPE_OVERHEAD_BYTES)
        self.seq = next(_sequence)
        self.timer = timer
        self.deadline = 0.0  # monotonic; set when it is queued
        self.hops = 0  # re-routes after which the ring had really moved
        self.backoff_s = FIRST_BACKOFF_S
        self.sent_version = 0  # the ring version it last went out with (0: never sent)
        self.link: Link | None = None  # the link it is queued on or in flight on
        self.problem: RingpoolError | None = None  # why it is being sent again
        self.ack: pb.Ack | None = None  # the node's final answer
        self.accepted: Latch[str] = Latch()
        self.result: Latch[pb.TaskResult] = Latch()
        # The handle given out for it, weakly: once that is gone, nobody can wait for
        # the result, which is then not watched for.
        self.holder: weakref.ref[object] | None = None

    @property
    def unheld(self) -> bool:
        """True once the handle given out for it is gone."""
        return self.holder is not None and self.holder() is None

    def __repr__(self) -> str:
        return f"<Ticket {self.task_id} key={self.key!r}>"

    @property
    def done(self) -> bool:
        return self.accepted.done

    def next_backoff(self) -> float:
        """How long to wait before the next resend (doubling up to ``MAX_BACKOFF_S``)."""
        delay = self.backoff_s
        self.backoff_s = min(delay * 2, MAX_BACKOFF_S)
        return delay
