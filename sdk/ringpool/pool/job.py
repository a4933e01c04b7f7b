"""What the pool runs (``Job``), how it ended (``Outcome``) and the ticket a tier holds."""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ringpool.pool.errors import TaskTimeout
from ringpool.pool.middleware import Chain
from ringpool.task import PermanentError, TaskContext, TaskDefinition, set_current_task
from ringpool.v1 import node_pb2 as pb

log = logging.getLogger("ringpool.pool")


@dataclass
class Job:
    task_id: str
    key: str
    definition: TaskDefinition[Any, Any]
    args: list[Any]
    kwargs: dict[str, Any]
    timeout_s: float
    context: TaskContext
    priority: int = 0
    ordered: bool = False

    @classmethod
    def for_envelope(
        cls, envelope: pb.TaskEnvelope, definition: TaskDefinition[Any, Any], args: list[Any],
        kwargs: dict[str, Any], node_id: str,
    ) -> Job:
        """The job that runs an accepted task on ``node_id``: the envelope's timeout, else
        the task's declared one, counted from now."""
        timeout_s = envelope.timeout_s or definition.timeout
        context = TaskContext(
            task_id=envelope.task_id, key=envelope.key, name=envelope.name,
            attempt=envelope.attempt, deadline=time.monotonic() + timeout_s,
            headers=dict(envelope.headers), node_id=node_id, eta=envelope.eta,
        )
        return cls(
            task_id=envelope.task_id, key=envelope.key, definition=definition, args=args,
            kwargs=kwargs, timeout_s=timeout_s, context=context, priority=envelope.priority,
            ordered=envelope.ordered,
        )


@dataclass
class Outcome:
    ok: bool
    value: Any = None
    error_type: str = ""
    error_message: str = ""
    traceback: str = ""
    timed_out: bool = False
    cancelled: bool = False
    exception: BaseException | None = field(default=None, repr=False)

    @classmethod
    def failure(cls, exc: BaseException) -> Outcome:
        # An error relayed from a cpu worker process names the child's type and traceback.
        # Other libraries use an ``error_type`` attribute too (redis-py: an enum), so only
        # a string counts.
        relayed = getattr(exc, "error_type", None)
        try:
            message = str(exc)
        except Exception:  # a task's exception may fail even at that
            message = f"<{type(exc).__name__} whose str() failed>"
        return cls(
            ok=False,
            error_type=relayed if isinstance(relayed, str) else type(exc).__name__,
            error_message=message,
            traceback=getattr(exc, "remote_traceback", "")
            or "".join(traceback.format_exception(exc)),
            exception=exc,
        )

    @classmethod
    def permanent(cls, error_type: str, message: str) -> Outcome:
        """A failure decided before the task ran that retrying cannot fix."""
        return cls(ok=False, error_type=error_type, error_message=message,
                   exception=PermanentError(message))

    @classmethod
    def cancelled_run(cls, job: Job) -> Outcome:
        """The job was cancelled: withdrawn before it ran, or stopped while running."""
        return cls(ok=False, error_type="TaskCancelled", cancelled=True,
                   error_message=f"task {job.task_id} was cancelled")

    @classmethod
    def timeout(cls, job: Job) -> Outcome:
        exc = TaskTimeout(f"task {job.task_id} timed out after {job.timeout_s}s")
        return cls(ok=False, error_type="TaskTimeout", error_message=str(exc),
                   timed_out=True, exception=exc)


PanicHandler = Callable[[Job, BaseException], None]


class Ticket:
    """A job accepted by a tier, with the callback that receives its outcome exactly once.

    ``token`` is the submitter's (the facade keeps the job's future there), so a tier
    needs no closure per job and ``release()`` can hand tickets back.

    ``done(ticket, outcome)`` gets the outcome; for a run the io tier abandoned at its
    deadline it later gets ``done(ticket, None)`` once the thread really returned.
    ``holds`` says how many of these calls free the job's ordered key: 1, or 2 for an
    abandoned run (set by the tier before either call).
    """

    __slots__ = ("done", "holds", "job", "token")

    def __init__(
        self, job: Job, done: Callable[[Ticket, Outcome | None], None], token: Any = None
    ) -> None:
        self.job = job
        self.done = done
        self.token = token
        self.holds = 1

    def finish(self, outcome: Outcome) -> None:
        self._call(outcome)

    def thread_returned(self) -> None:
        """The abandoned run of this ticket is over: nothing of it runs any more."""
        self._call(None)

    def _call(self, outcome: Outcome | None) -> None:
        try:
            self.done(self, outcome)
        except Exception:
            # A broken callback must not take the worker down with it.
            log.exception("outcome callback failed for task %s", self.job.task_id)


def report_panic(handler: PanicHandler | None, job: Job, exc: BaseException) -> None:
    """Tell the panic handler about a task's exception; the handler's own failure is logged."""
    if handler is None:
        return
    try:
        handler(job, exc)
    except Exception:
        log.exception("panic handler failed for task %s", job.task_id)


def run_sync(
    job: Job, chain: Chain, panic: PanicHandler | None, call: Callable[[], Any]
) -> Outcome:
    """Run ``call`` for ``job`` through the middleware chain, capturing how it ended.

    Every way out is an outcome: ``SystemExit`` and ``KeyboardInterrupt`` raised by a task
    are its failure, never the worker's end.
    """
    set_current_task(job.context)
    try:
        return Outcome(ok=True, value=chain.run(job.context, call))
    except TaskTimeout:
        return Outcome.timeout(job)
    except BaseException as exc:
        report_panic(panic, job, exc)
        return Outcome.failure(exc)
    finally:
        set_current_task(None)
