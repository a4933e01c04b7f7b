"""Progress reports of running tasks (``current_task().progress``) on the wire and in records.

A report travels as a ``TaskProgress`` message (pushed on the submitter's stream) and is
kept in the task record as three fields (``progress``, ``progress_meta``, ``progress_at``);
both carry the value, the meta as JSON text, and when the task reported it.
"""

from __future__ import annotations

import json
from typing import Any

from ringpool.task import TaskProgress
from ringpool.v1 import node_pb2 as pb


def encode_meta(progress: TaskProgress) -> bytes:
    """The meta as compact JSON ('' when there is none)."""
    if progress.meta is None:
        return b""
    return json.dumps(progress.meta, separators=(",", ":")).encode()


def to_wire(task_id: str, progress: TaskProgress) -> pb.TaskProgress:
    return pb.TaskProgress(task_id=task_id, value=progress.value, meta=encode_meta(progress),
                           at=progress.at)


def from_wire(message: pb.TaskProgress) -> TaskProgress:
    return TaskProgress(message.value, _meta(message.meta), message.at)


def record_fields(progress: TaskProgress) -> tuple[str, bytes, str]:
    """(value, meta, at) as a record keeps them: text, exact for any double."""
    return repr(progress.value), encode_meta(progress), repr(progress.at)


def from_record(value: Any, meta: Any, at: Any) -> TaskProgress | None:
    """The report a record holds (its fields as Redis returns them), or None."""
    if value in (None, b"", ""):
        return None
    return TaskProgress(float(value), _meta(meta), float(at or 0.0))


def newest(*reports: TaskProgress | None) -> TaskProgress | None:
    """The latest of these reports (by when the task made it)."""
    known = [report for report in reports if report is not None]
    return max(known, key=lambda report: report.at) if known else None


def _meta(raw: Any) -> dict[str, Any] | None:
    if not raw:
        return None
    meta = json.loads(raw)
    return meta if isinstance(meta, dict) else None
