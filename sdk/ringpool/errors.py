"""ringpool's exceptions: one root, no builtin names.

    RingpoolError
    ├── DispatchError            the task was not accepted; nothing was written
    │   ├── UnknownTask          no node has a task by that name
    │   ├── InvalidKey           empty or oversized routing key
    │   ├── InvalidTask          bad field: non-JSON arguments, negative timeout, ...
    │   ├── PayloadTooLarge      encoded arguments above the payload limit
    │   ├── NoNodesAvailable     the ring is empty
    │   ├── Overloaded           the owner kept refusing for lack of capacity
    │   ├── TooManyHops          ownership kept moving while resending
    │   ├── NotRedeliverable     a retry or replay of a task that is no longer waiting
    │   ├── TaskIdTaken          a new task whose id another task already has
    │   └── PermissionDenied     a retry or replay sent without the operator credential
    ├── ClusterUnavailable       ZooKeeper, Redis or the owner cannot be reached
    │   └── Unauthenticated      the node refused our token or certificate
    ├── TaskFailed               the task ended in the dead-letter queue
    ├── TaskCancelled            the task was cancelled before it finished
    ├── TaskAlreadyFinished      a cancel came after the task had its outcome
    ├── ResultTimeout            no result within the wait's timeout
    ├── TaskNotFound             no record for that task id
    ├── InvalidSchedule          a schedule's name, cron, interval, time zone or task is bad
    ├── ScheduleNotFound         no schedule by that name
    └── ConfigError              invalid configuration or settings

``ResultTimeout`` also derives from the builtin ``TimeoutError`` so that
``h.result(timeout=...)`` raises what the contract promises.
"""

from __future__ import annotations


class RingpoolError(Exception):
    """Root of every error ringpool raises."""


class DispatchError(RingpoolError):
    """A task was refused before it was accepted; no state was written."""


class UnknownTask(DispatchError):
    pass


class InvalidKey(DispatchError):
    pass


class InvalidTask(DispatchError):
    pass


class PayloadTooLarge(DispatchError):
    pass


class NoNodesAvailable(DispatchError):
    pass


class Overloaded(DispatchError):
    pass


class TooManyHops(DispatchError):
    pass


class NotRedeliverable(DispatchError):
    pass


class TaskIdTaken(DispatchError):
    pass


class PermissionDenied(DispatchError):
    pass


class ClusterUnavailable(RingpoolError):
    pass


class Unauthenticated(ClusterUnavailable):
    pass


class ResultTimeout(RingpoolError, TimeoutError):
    pass


class TaskNotFound(RingpoolError):
    pass


class ConfigError(RingpoolError):
    pass


class InvalidSchedule(RingpoolError):
    pass


class ScheduleNotFound(RingpoolError):
    pass


class TaskCancelled(RingpoolError):
    """The task was cancelled (``handle.cancel()``, ``taskctl task cancel``): it has no result."""

    def __init__(self, task_id: str) -> None:
        super().__init__(f"task {task_id} was cancelled")
        self.task_id = task_id


class TaskAlreadyFinished(RingpoolError):
    """A cancel came too late: the task already has its outcome, ``state``."""

    def __init__(self, task_id: str, state: str) -> None:
        super().__init__(f"task {task_id} already finished ({state}); nothing was cancelled")
        self.task_id = task_id
        self.state = state


class TaskFailed(RingpoolError):
    """The task ended in the dead-letter queue; carries the remote error."""

    def __init__(
        self,
        task_id: str,
        error_type: str,
        message: str,
        traceback: str = "",
        attempts: int = 0,
    ) -> None:
        super().__init__(f"task {task_id} failed: {error_type}: {message}")
        self.task_id = task_id
        self.error_type = error_type
        self.message = message
        self.traceback = traceback
        self.attempts = attempts
