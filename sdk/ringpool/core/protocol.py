"""What the protocol's codes mean: task states, and what a sender does with each ack code.

Every ``AckCode`` a node answers has exactly one meaning for the sender:

    ACCEPTED, DUPLICATE          ACCEPTS    durably accepted (DUPLICATE: as an earlier task)
    WRONG_OWNER, DRAINING        REROUTE    refresh the ring and resend
    OVERLOADED, INTERNAL         BACK_OFF   wait ``retry_after_s`` and resend
    UNKNOWN_TASK, ...            REFUSALS   raise the code's ``DispatchError``

``REFUSALS`` is the one table between refusing codes and exceptions: a node answers
``ack_code_for(error)``, a sender raises ``refusal(code, message)``, and each code
maps to exactly one exception class and back.

A cancel stops a task in any ``CANCELLABLE`` state; ``cancel_refusal`` is what it raises
for the others (a finished task: ``TaskAlreadyFinished``, no record: ``TaskNotFound``).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType

from ringpool.errors import (
    DispatchError,
    InvalidKey,
    InvalidTask,
    NotRedeliverable,
    PayloadTooLarge,
    PermissionDenied,
    RingpoolError,
    TaskAlreadyFinished,
    TaskIdTaken,
    TaskNotFound,
    UnknownTask,
)
from ringpool.v1 import node_pb2 as pb


class TaskState(StrEnum):
    """Where a task is; ``handle.status()`` answers one of these."""

    #: Accepted durably by its key's owner; waiting for a worker there.
    QUEUED = "QUEUED"
    #: A worker is running it.
    RUNNING = "RUNNING"
    #: It failed (or its node died) and waits in the retry set for its next attempt.
    RETRY_SCHEDULED = "RETRY_SCHEDULED"
    #: It returned; the result is kept for the result TTL.
    SUCCEEDED = "SUCCEEDED"
    #: It failed for good and sits in the dead-letter queue.
    FAILED = "FAILED"
    #: Accepted with a countdown or an eta (or made by a schedule's tick): held in Redis
    #: until its time, then sent to its key's owner.
    SCHEDULED = "SCHEDULED"
    #: Cancelled before it finished: it has no result; the record expires after the
    #: result TTL.
    CANCELLED = "CANCELLED"
    #: No record: never accepted, purged from the DLQ, or its result expired.
    UNKNOWN = "UNKNOWN"

    @property
    def terminal(self) -> bool:
        """True once the task has its outcome (SUCCEEDED, FAILED or CANCELLED)."""
        return self in (TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED)

    @property
    def wire(self) -> int:
        """The ``TaskState`` value on the wire (UNKNOWN travels as STATE_UNSPECIFIED)."""
        return _WIRE[self]

    @classmethod
    def from_wire(cls, value: int) -> TaskState:
        return _FROM_WIRE.get(value, cls.UNKNOWN)

    @classmethod
    def parse(cls, text: str) -> TaskState:
        """The state a record holds as text ('' or anything unknown: UNKNOWN)."""
        try:
            return cls(text)
        except ValueError:
            return cls.UNKNOWN


_WIRE: dict[TaskState, int] = {
    state: pb.TaskState.Value(state.value) if state is not TaskState.UNKNOWN
    else pb.STATE_UNSPECIFIED
    for state in TaskState
}
_FROM_WIRE: dict[int, TaskState] = {code: state for state, code in _WIRE.items()}

ACCEPTS = frozenset({pb.ACCEPTED, pb.DUPLICATE})
REROUTE = frozenset({pb.WRONG_OWNER, pb.DRAINING})
BACK_OFF = frozenset({pb.OVERLOADED, pb.INTERNAL})
REFUSALS: Mapping[int, type[DispatchError]] = MappingProxyType({
    pb.UNKNOWN_TASK: UnknownTask,
    pb.INVALID_ARGUMENT: InvalidTask,
    pb.PAYLOAD_TOO_LARGE: PayloadTooLarge,
    pb.INVALID_KEY: InvalidKey,
    pb.NOT_REDELIVERABLE: NotRedeliverable,
    pb.ID_TAKEN: TaskIdTaken,
    pb.PERMISSION_DENIED: PermissionDenied,
})
_CODES: dict[type[DispatchError], int] = {kind: code for code, kind in REFUSALS.items()}


CANCELLABLE = frozenset({TaskState.SCHEDULED, TaskState.QUEUED, TaskState.RUNNING,
                         TaskState.RETRY_SCHEDULED})


def cancel_refusal(task_id: str, state: TaskState) -> RingpoolError | None:
    """What cancelling a task in ``state`` raises; None when it can be cancelled."""
    if state in CANCELLABLE:
        return None
    if state is TaskState.UNKNOWN:
        return TaskNotFound(f"no task {task_id}")
    return TaskAlreadyFinished(task_id, state.value)


def code_name(code: int) -> str:
    """``AckCode`` name of ``code`` (its number when this version does not know it)."""
    try:
        return pb.AckCode.Name(code)
    except ValueError:
        return str(code)


def ack_code_for(error: DispatchError) -> int:
    """The refusing code a node answers for ``error``: its nearest class in ``REFUSALS``.

    Errors only a client raises (``NoNodesAvailable``, ``Overloaded``, ...) have no code
    of their own; should one reach a node it answers INVALID_ARGUMENT.
    """
    for kind in type(error).__mro__:
        code = _CODES.get(kind)
        if code is not None:
            return code
    return pb.INVALID_ARGUMENT


def refusal(code: int, message: str = "") -> DispatchError:
    """The exception a sender raises for a refusing ack; a bare DispatchError for a code
    this version does not know."""
    return REFUSALS.get(code, DispatchError)(message or code_name(code))
