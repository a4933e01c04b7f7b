"""What a task's run comes to: success, a retry after backoff, or the dead-letter queue.

One decision for everything that runs tasks: a node records it in Redis, the
in-process test cluster (``ringpool.testing``) in memory, so a task ends alike in
both. Pure: no clock, no I/O (a retry says how long to wait, not when).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

from ringpool.core import codec
from ringpool.core.envelope import DEFAULT_MAX_RETRIES
from ringpool.errors import InvalidTask
from ringpool.task import PermanentError, Retry, RetryPolicy, TaskDefinition
from ringpool.v1 import node_pb2 as pb

MAX_ERROR_CHARS = 16_384  # per error message and traceback kept in the record
INVALID_ARGUMENTS = "InvalidArguments"  # the error type of a call that cannot bind
RESULT_NOT_SERIALIZABLE = "ResultNotSerializable"
DECLARED_NOTHING = RetryPolicy()  # what @task gives a task that declares no retry options


class Ended(Protocol):
    """How a run ended, as the pools report it (``ringpool.pool.Outcome``)."""

    ok: bool
    value: Any
    error_type: str
    error_message: str
    traceback: str
    exception: BaseException | None


@dataclass(frozen=True, slots=True)
class Verdict:
    """The decision for one run; ``op`` names the record's transition."""

    op: Literal["ok", "retry", "dead"]
    result: bytes = b""  # ok: the return value as JSON
    error_type: str = ""
    error_message: str = ""
    traceback: str = ""
    retry_in_s: float = 0.0  # retry: how long until the next attempt
    dead_reason: str = ""  # dead: "permanent" or "retries exhausted"


def retry_policy(definition: TaskDefinition[Any, Any], cluster_default: RetryPolicy | None) -> RetryPolicy:
    """The task's declared policy; the cluster's default when it declared none."""
    if cluster_default is not None and definition.retry == DECLARED_NOTHING:
        return cluster_default
    return definition.retry


def max_retries_of(envelope: pb.TaskEnvelope, policy: RetryPolicy) -> int:
    """The task's own ``max_retries`` when the sender set one, else the policy's."""
    if envelope.max_retries == DEFAULT_MAX_RETRIES:
        return policy.max_retries
    return envelope.max_retries


@functools.lru_cache(maxsize=4096)
def _binding_error(fn: Callable[..., Any], positional: int, keywords: tuple[str, ...]) -> str:
    """Why this shape of call cannot bind to ``fn`` ('' when it can): depends on shape only."""
    try:
        inspect.signature(fn).bind(*range(positional), **dict.fromkeys(keywords))
    except TypeError as exc:
        return str(exc)
    return ""


def check_arguments(definition: TaskDefinition[Any, Any], args: list[Any],
                    kwargs: dict[str, Any]) -> None:
    """InvalidTask when the arguments cannot bind to the task's signature (permanent:
    the run ends with ``INVALID_ARGUMENTS``)."""
    error = _binding_error(definition.fn, len(args), tuple(sorted(kwargs)))
    if error:
        raise InvalidTask(f"arguments do not match {definition.name}: {error}")


def conclude(envelope: pb.TaskEnvelope, outcome: Ended, policy: RetryPolicy) -> Verdict:
    """Success when the value encodes as JSON; otherwise a retry while attempts are left
    and the error is not permanent (``Retry(countdown)`` sets the wait), else the DLQ."""
    error = outcome.exception
    if outcome.ok:
        try:
            return Verdict("ok", result=codec.encode(outcome.value))
        except InvalidTask as exc:
            error = PermanentError(str(exc))
            error_type, message, traceback = RESULT_NOT_SERIALIZABLE, str(exc), ""
    else:
        # Whatever a task raised, only text is kept.
        error_type = str(outcome.error_type)
        message, traceback = str(outcome.error_message), str(outcome.traceback)
    failed = Verdict("dead", error_type=error_type, error_message=message[:MAX_ERROR_CHARS],
                     traceback=traceback[-MAX_ERROR_CHARS:])
    if envelope.attempt <= max_retries_of(envelope, policy) and not isinstance(error, PermanentError):
        if isinstance(error, Retry) and error.countdown is not None:
            wait_s = max(0.0, error.countdown)
        else:
            wait_s = policy.delay_s(envelope.attempt)
        return replace(failed, op="retry", retry_in_s=wait_s)
    return replace(failed, dead_reason="permanent" if isinstance(error, PermanentError)
                   else "retries exhausted")
