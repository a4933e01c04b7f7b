"""A task record as Redis holds it (its fields are in ``keys``), read into Python."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ringpool.core import progress as progress_fields
from ringpool.core.protocol import TaskState
from ringpool.store import listing
from ringpool.task import TaskProgress
from ringpool.v1 import node_pb2 as pb


def text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else value


def number(value: bytes | str | None) -> float | None:
    return float(value) if value not in (None, b"", "") else None  # type: ignore[arg-type]


@dataclass
class TaskRecord:
    """A task as Redis holds it: the truth for status, results and the DLQ."""

    task_id: str
    state: TaskState
    name: str = ""
    key: str = ""
    node: str = ""
    attempt: int = 0
    recoveries: int = 0
    replays: int = 0
    completions: int = 0  # final transitions applied: the fence keeps this at most 1
    result: bytes | None = None
    error_type: str = ""
    error_message: str = ""
    traceback: str = ""
    dead_reason: str = ""
    created_at: float | None = None
    accepted_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    first_failure_at: float | None = None
    last_failure_at: float | None = None
    progress: TaskProgress | None = None  # the latest the running task reported
    expires_at: float | None = None  # when a finished task's record goes (if read)
    envelope: pb.TaskEnvelope = field(default_factory=pb.TaskEnvelope)

    @property
    def eta(self) -> float | None:
        """When a delayed task or a schedule's tick was due; None for one sent to run at once."""
        return self.envelope.eta or None

    @property
    def schedule(self) -> str:
        """The schedule whose tick made this task ('' for none)."""
        return self.envelope.schedule

    @classmethod
    def from_hash(cls, task_id: str, raw: Mapping[Any, Any]) -> TaskRecord:
        get = raw.get
        envelope = pb.TaskEnvelope()
        if get(b"envelope"):
            envelope.ParseFromString(raw[b"envelope"])
        else:  # a slim record (the task succeeded) keeps these of its envelope, no id
            envelope.key, envelope.name = text(get(b"key")), text(get(b"name"))
            envelope.schedule, envelope.eta = text(get(b"schedule")), number(get(b"eta")) or 0.0
            envelope.group = text(get(b"group"))
            envelope.result_ttl_s = int(get(b"result_ttl_s") or 0)
        return cls(
            task_id=task_id,
            state=TaskState.parse(text(get(b"state"))),
            name=envelope.name,
            key=envelope.key,
            node=text(get(b"node")),
            attempt=int(get(b"attempt") or 0),
            recoveries=int(get(b"recoveries") or 0),
            replays=int(get(b"replays") or 0),
            completions=int(get(b"completions") or 0),
            result=get(b"result"),
            error_type=text(get(b"error_type")),
            error_message=text(get(b"error_message")),
            traceback=text(get(b"traceback")),
            dead_reason=text(get(b"dead_reason")),
            created_at=number(get(b"created_at")),
            accepted_at=number(get(b"accepted_at")),
            started_at=number(get(b"started_at")),
            finished_at=number(get(b"finished_at")),
            first_failure_at=number(get(b"first_failure_at")),
            last_failure_at=number(get(b"last_failure_at")),
            progress=progress_fields.from_record(
                get(b"progress"), get(b"progress_meta"), get(b"progress_at")),
            envelope=envelope,
        )

    def summary(self) -> listing.TaskRecordSummary:
        """What a listing shows of this record."""
        return listing.TaskRecordSummary(
            task_id=self.task_id, state=self.state, name=self.name, key=self.key,
            node=self.node, attempt=self.attempt, replays=self.replays,
            error_type=self.error_type, error_message=self.error_message,
            accepted_at=self.accepted_at, started_at=self.started_at,
            finished_at=self.finished_at,
            progress=self.progress.value if self.progress is not None else None)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (the envelope's payload decoded as text)."""
        data = {k: v for k, v in self.__dict__.items()
                if k not in ("envelope", "result", "progress")}
        data["result"] = self.result.decode(errors="replace") if self.result is not None else None
        progress = self.progress
        data["progress"] = None if progress is None else {
            "value": progress.value, "meta": progress.meta, "at": progress.at}
        data["group"] = self.envelope.group
        data["result_ttl_s"] = self.envelope.result_ttl_s or None
        data["args"] = self.envelope.payload.decode(errors="replace")
        data["headers"] = dict(self.envelope.headers)
        data["idempotency_key"] = self.envelope.idempotency_key
        data["eta"] = self.eta
        data["schedule"] = self.schedule
        return data
