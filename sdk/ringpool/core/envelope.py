"""Task envelopes: built by senders, validated field by field by nodes.

One set of rules for both sides, so a client refuses locally what a node would
refuse, and a node still refuses it when the client is not ours.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from ringpool.core import codec
from ringpool.core.slots import idempotent_slot, new_task_id, slot_of, task_slot
from ringpool.errors import ConfigError, InvalidKey, InvalidTask, PayloadTooLarge
from ringpool.task import (
    DEFAULT_GROUP,
    MAX_RESULT_TTL_S,
    MAX_RETRIES_LIMIT,
    MAX_TIMEOUT_S,
    PRIORITY_LIMIT,
    Task,
    check_result_ttl,
    valid_group,
)
from ringpool.v1 import node_pb2 as pb

MIB = 1024 * 1024
# max_retries travels as uint32; this value means "the task's declared default".
DEFAULT_MAX_RETRIES = 2**32 - 1
MAX_DELAY_S = 366 * 24 * 3600.0  # the furthest ahead a countdown or an eta may be
CLOCK_SKEW_S = 3600.0  # a node allows a sender's clock this far ahead of its own
# Task ids reach logs and terminals: printable ASCII only, no spaces or control characters.
_TASK_ID = re.compile(r"[!-~]{1,64}")


@dataclass(frozen=True)
class Limits:
    """Size limits enforced at both ends of the wire."""

    max_payload_bytes: int = MIB
    max_key_bytes: int = 1024
    max_batch_tasks: int = 5000
    max_headers: int = 32
    max_header_bytes: int = 4096
    max_idempotency_key_bytes: int = 512
    max_name_bytes: int = 200

    @property
    def max_message_bytes(self) -> int:
        """gRPC message cap: room for one full batch of small tasks or one maximal task."""
        return max(4 * MIB, self.max_payload_bytes + 64 * 1024)


DEFAULT_LIMITS = Limits()


MAX_REPLY_TO_CHARS = 64


def check_task_id(task_id: str) -> str:
    if not _TASK_ID.fullmatch(task_id):
        raise InvalidTask("task_id must be 1-64 printable ASCII characters, no spaces")
    return task_id


def check_key(key: object, limits: Limits = DEFAULT_LIMITS) -> str:
    if not isinstance(key, str) or not key:
        raise InvalidKey("the routing key must be a non-empty string")
    if len(key.encode()) > limits.max_key_bytes:
        raise InvalidKey(f"the routing key is longer than {limits.max_key_bytes} bytes")
    return key


def eta_of(countdown: object = None, eta: object = None, now: float | None = None) -> float:
    """The unix time a task may run from, for ``dispatch(countdown=...)`` or ``eta=...``:
    0.0 (at once) when neither is given. An eta in the past means at once too.

    A countdown is a number of seconds in [0, ``MAX_DELAY_S``]; an eta a timezone-aware
    ``datetime`` at most that far ahead (a naive one is ambiguous: refused).
    """
    if countdown is not None and eta is not None:
        raise InvalidTask("give a countdown or an eta, not both")
    now = time.time() if now is None else now
    if countdown is not None:
        if isinstance(countdown, bool) or not isinstance(countdown, int | float) \
                or not 0 <= countdown <= MAX_DELAY_S:  # also refuses NaN
            raise InvalidTask(f"countdown must be a number of seconds in [0, {MAX_DELAY_S:g}], "
                              f"got {countdown!r}")
        return now + countdown if countdown else 0.0
    if eta is None:
        return 0.0
    if not isinstance(eta, datetime):
        raise InvalidTask(f"eta must be a timezone-aware datetime, got {type(eta).__name__}")
    if eta.tzinfo is None or eta.utcoffset() is None:
        raise InvalidTask("eta must be timezone-aware (e.g. datetime.now(UTC) + timedelta(...)): "
                          f"a naive datetime ({eta.isoformat()}) names no single moment")
    at = eta.timestamp()
    if at > now + MAX_DELAY_S:
        raise InvalidTask(f"eta {eta.isoformat()} is more than {MAX_DELAY_S / 86400:g} days ahead")
    return at


def build(
    key: str,
    task: Task,
    ring_version: int,
    headers: Mapping[str, str] | None = None,
    limits: Limits = DEFAULT_LIMITS,
    *,
    group: str = DEFAULT_GROUP,
    eta: float = 0.0,
    reply_to: str = "",
) -> pb.TaskEnvelope:
    """A validated envelope for a new task, for nodes of ``group``; raises the DispatchError
    a node would answer.

    Each field is checked as the Python value it is made from, with the rules
    ``validate`` applies to it at the node. ``eta`` comes from ``eta_of``. ``reply_to``
    names the sender's done channel (``StateStore.reply_to``): where the task's outcome
    is announced when it finishes away from an open stream of the sender.
    """
    if not isinstance(task, Task):
        raise InvalidTask(f"expected a Task, got {type(task).__name__}")
    key = check_key(key, limits)
    name = check_name(task.name, limits)
    idempotency_key = check_idempotency_key(task.idempotency_key or "", limits)
    envelope = pb.TaskEnvelope(
        task_id=new_task_id(task_slot(key, name, idempotency_key)),
        key=key,
        name=name,
        payload=check_payload(codec.encode_call(task.args, task.kwargs), limits),
        codec=codec.CODEC,
        idempotency_key=idempotency_key,
        attempt=1,
        max_retries=int(
            _in_range("max_retries", task.max_retries, 0, MAX_RETRIES_LIMIT, DEFAULT_MAX_RETRIES)
        ),
        timeout_s=_in_range("timeout", task.timeout, 0.001, MAX_TIMEOUT_S, 0.0),
        priority=int(_in_range("priority", task.priority, -PRIORITY_LIMIT, PRIORITY_LIMIT, 0)),
        ordered=bool(task.ordered),
        ring_version=ring_version,
        group=check_group(group),
        result_ttl_s=0 if task.result_ttl is None else check_ttl(task.result_ttl),
        eta=eta,
        reply_to=reply_to,
    )
    if headers:
        envelope.headers.update(check_headers(headers, limits))
    return envelope


def check_name(name: object, limits: Limits = DEFAULT_LIMITS) -> str:
    if not isinstance(name, str) or not name or len(name.encode()) > limits.max_name_bytes:
        raise InvalidTask(f"task name must be 1-{limits.max_name_bytes} bytes")
    return name


def check_group(group: object) -> str:
    if not valid_group(group):
        raise InvalidTask(f"invalid group {group!r}: use 1-64 of [A-Za-z0-9_.-]")
    return str(group)


def check_ttl(result_ttl: object) -> int:
    try:
        return check_result_ttl(result_ttl)
    except ConfigError as exc:
        raise InvalidTask(str(exc)) from None


def check_payload(payload: bytes, limits: Limits = DEFAULT_LIMITS) -> bytes:
    if len(payload) > limits.max_payload_bytes:
        raise PayloadTooLarge(
            f"payload is {len(payload)} bytes; the limit is {limits.max_payload_bytes}"
        )
    return payload


def check_idempotency_key(idempotency_key: str, limits: Limits = DEFAULT_LIMITS) -> str:
    if len(idempotency_key.encode()) > limits.max_idempotency_key_bytes:
        raise InvalidTask(f"idempotency_key is over {limits.max_idempotency_key_bytes} bytes")
    return idempotency_key


def check_headers(headers: Mapping[str, str], limits: Limits = DEFAULT_LIMITS
                  ) -> Mapping[str, str]:
    if len(headers) > limits.max_headers or any(
        len(k) + len(v) > limits.max_header_bytes for k, v in headers.items()
    ):
        raise InvalidTask(f"at most {limits.max_headers} headers of {limits.max_header_bytes} bytes")
    return headers


def _in_range(name: str, value: float | None, low: float, high: float, unset: float) -> float:
    """``unset`` when value is None (the task's declared default applies), else checked."""
    if value is None:
        return unset
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise InvalidTask(f"{name} must be a number in [{low}, {high}], got {value!r}")
    return value


def validate(
    envelope: pb.TaskEnvelope, limits: Limits = DEFAULT_LIMITS, decode_payload: bool = True
) -> None:
    """Raise the matching DispatchError for any field a node must refuse."""
    check_task_id(envelope.task_id)
    check_key(envelope.key, limits)
    check_name(envelope.name, limits)
    if envelope.codec != codec.CODEC:
        raise InvalidTask(f"unsupported codec {envelope.codec!r}: only 'json' is accepted")
    check_payload(envelope.payload, limits)
    check_idempotency_key(envelope.idempotency_key, limits)
    if envelope.idempotency_key and envelope.source == pb.SOURCE_CLIENT and slot_of(
            envelope.task_id) != idempotent_slot(envelope.name, envelope.idempotency_key):
        # Its fingerprint lives in the partition its id names: every submission of the
        # task must name the same one (ringpool.core.slots). A schedule's tick carries
        # its schedule's slot instead, and is never checked against a fingerprint.
        raise InvalidTask("the task id does not carry the slot of its idempotency key")
    if len(envelope.reply_to) > MAX_REPLY_TO_CHARS or not envelope.reply_to.isascii():
        raise InvalidTask(f"reply_to must be at most {MAX_REPLY_TO_CHARS} ASCII characters")
    if not 1 <= envelope.attempt <= MAX_RETRIES_LIMIT + 1:
        raise InvalidTask(f"attempt must be in [1, {MAX_RETRIES_LIMIT + 1}]")
    if envelope.max_retries > MAX_RETRIES_LIMIT and envelope.max_retries != DEFAULT_MAX_RETRIES:
        raise InvalidTask(f"max_retries must be in [0, {MAX_RETRIES_LIMIT}]")
    if not (0 <= envelope.timeout_s <= MAX_TIMEOUT_S):  # also refuses NaN
        raise InvalidTask(f"timeout must be in [0, {MAX_TIMEOUT_S}] seconds")
    if not -PRIORITY_LIMIT <= envelope.priority <= PRIORITY_LIMIT:
        raise InvalidTask(f"priority must be in [-{PRIORITY_LIMIT}, {PRIORITY_LIMIT}]")
    if envelope.headers:
        check_headers(envelope.headers, limits)
    check_group(envelope.group)
    if envelope.result_ttl_s > MAX_RESULT_TTL_S:
        raise InvalidTask(f"result_ttl must be at most {MAX_RESULT_TTL_S} seconds")
    if envelope.eta and not (math.isfinite(envelope.eta)
                             and 0 < envelope.eta <= time.time() + MAX_DELAY_S + CLOCK_SKEW_S):
        raise InvalidTask(f"eta must be a unix time at most {MAX_DELAY_S / 86400:g} days ahead")
    if len(envelope.schedule.encode()) > limits.max_name_bytes:
        raise InvalidTask(f"schedule name is over {limits.max_name_bytes} bytes")
    if decode_payload:
        codec.decode_call(envelope.payload)

