"""Listings of tasks, a page at a time: what to keep (``TaskQuery``), what comes back
(``Page`` of ``Listed`` summaries) and the cursors between pages.

A listing of the DLQ or the retry set walks every partition's zset at once
(``lua/zafter.lua``: the entries after the cursor, by score, equal scores by id) and
merges them; ``lua/summaries.lua`` then filters the entries on the Redis side and
returns their summaries. The in-flight listing walks each partition's in-flight hash
of each node (HSCAN). A page reads at most a budget of entries, so it costs the same
with a hundred entries or a million, and no listing ever reads a whole set. A filter
that matches little may need several calls to fill a page: each returns what it found
and a cursor to go on from.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ringpool.core.protocol import TaskState
from ringpool.errors import RingpoolError

MAX_PATTERN_CHARS = 256
MAX_PAGE = 1000
SCAN_BUDGET = 2000  # entries one call reads at most


class InvalidQuery(RingpoolError, ValueError):
    """A listing's filter or cursor is malformed; nothing was read."""


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _float(value: Any) -> float | None:
    text = _text(value)
    return float(text) if text else None


def _lua_literal(char: str) -> str:
    # In a Lua pattern, % before any character that is not a letter or digit stands for it.
    return char if char.isalnum() else "%" + char


def lua_pattern(glob: str) -> str:
    """An anchored Lua pattern for a glob (``*`` any run, ``?`` one character, ``\\``
    before either for itself); '' for ''."""
    if not glob:
        return ""
    out = []
    chars = iter(glob)
    for char in chars:
        if char == "\\":
            out.append(_lua_literal(next(chars, "\\")))
        elif char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        else:
            out.append(_lua_literal(char))
    return "^" + "".join(out) + "$"


def literal(text: str) -> str:
    """A glob that matches ``text`` only."""
    return "".join("\\" + c if c in "*?\\" else c for c in text)


def is_literal(glob: str) -> bool:
    """Whether a glob matches one text only (no unescaped ``*`` or ``?``)."""
    chars = iter(glob)
    for char in chars:
        if char == "\\":
            next(chars, None)
        elif char in "*?":
            return False
    return True


def unescape(glob: str) -> str:
    """The text a literal glob matches."""
    out, chars = [], iter(glob)
    for char in chars:
        out.append(next(chars, "\\") if char == "\\" else char)
    return "".join(out)


@dataclass(frozen=True)
class TaskQuery:
    """What a listing keeps: globs (``*``, ``?``) over the task name, the error type, the
    key and the node (that accepted it last), and a time range in unix seconds, both ends
    inclusive (the DLQ's time is when a task was dead-lettered, the retry set's when its
    next attempt is due)."""

    name: str = ""
    error: str = ""
    key: str = ""
    since: float | None = None
    until: float | None = None
    node: str = ""

    def __post_init__(self) -> None:
        for label, glob in (("task name", self.name), ("error type", self.error),
                            ("key", self.key), ("node", self.node)):
            if len(glob) > MAX_PATTERN_CHARS:
                raise InvalidQuery(f"{label} filter longer than {MAX_PATTERN_CHARS} characters")
            if any(ord(c) < 32 for c in glob):
                raise InvalidQuery(f"{label} filter holds control characters")
        for label, value in (("since", self.since), ("until", self.until)):
            if value is not None and not math.isfinite(value):
                raise InvalidQuery(f"{label} must be a finite time, got {value!r}")
        if self.since is not None and self.until is not None and self.since > self.until:
            raise InvalidQuery("the time range ends before it starts (since > until)")

    @property
    def filtered(self) -> bool:
        return bool(self.name or self.error or self.key or self.node) or self.timed

    @property
    def patterned(self) -> bool:
        """Whether a glob filters (the time range aside)."""
        return bool(self.name or self.error or self.key or self.node)

    @property
    def timed(self) -> bool:
        return self.since is not None or self.until is not None

    def patterns(self) -> list[str]:
        return [lua_pattern(self.name), lua_pattern(self.error), lua_pattern(self.key),
                lua_pattern(self.node)]


@dataclass(frozen=True)
class TaskRecordSummary:
    task_id: str
    state: TaskState  # UNKNOWN: the record is gone (purged or expired meanwhile)
    name: str
    key: str
    node: str
    attempt: int
    replays: int
    error_type: str
    error_message: str
    accepted_at: float | None
    started_at: float | None
    finished_at: float | None
    progress: float | None = None  # the latest progress value a running task reported

    @property
    def exists(self) -> bool:
        return self.state is not TaskState.UNKNOWN

    @classmethod
    def missing(cls, task_id: str) -> TaskRecordSummary:
        """A listed task whose record is gone."""
        return cls(task_id, TaskState.UNKNOWN, "", "", "", 0, 0, "", "", None, None, None)


@dataclass(frozen=True)
class Listed:
    """One task of a listing: a summary record (no arguments, result or traceback; an
    error message cut to 300 characters) and its time in the listed set, if any."""

    record: TaskRecordSummary
    at: float | None


@dataclass(frozen=True)
class Page:
    items: list[Listed]
    next: str | None  # the cursor of the next page; None: this was the last
    scanned: int  # entries read for this page, matched or not


def parse_rows(rows: list[Any]) -> list[Listed]:
    """Rows as ``lua/summaries.lua`` builds them."""
    out = []
    for row in rows:
        (task_id, score, key, name, state, attempt, node, error_type, error_message, replays,
         accepted_at, started_at, finished_at, progress) = (_text(v) for v in row)
        summary = TaskRecordSummary(
            task_id=task_id, state=TaskState.parse(state), name=name, key=key, node=node,
            attempt=int(attempt or 0), replays=int(replays or 0), error_type=error_type,
            error_message=error_message, accepted_at=_float(accepted_at),
            started_at=_float(started_at), finished_at=_float(finished_at),
            progress=_float(progress))
        out.append(Listed(summary, _float(score)))
    return out


def zset_cursor(task_id: Any, score: Any) -> str | None:
    task_id, score = _text(task_id), _text(score)
    return f"{score}:{task_id}" if task_id else None


def parse_zset_cursor(cursor: str | None) -> tuple[str, str]:
    """(task id, score) of a cursor ``zset_cursor`` made; ('', '') for none."""
    if not cursor:
        return "", ""
    score, sep, task_id = cursor.partition(":")
    try:
        valid = bool(sep and task_id) and math.isfinite(float(score))
    except ValueError:
        valid = False
    if not valid:
        raise InvalidQuery(f"not a listing cursor: {cursor!r}")
    return task_id, score


def inflight_cursor(partition: int, node_id: str, scan_cursor: str) -> str:
    return f"{partition}:{scan_cursor}:{node_id}"


def parse_inflight_cursor(cursor: str | None) -> tuple[int, str, str]:
    """(partition, node id, HSCAN cursor) of a cursor ``inflight_cursor`` made; (0, '', '0')
    for none."""
    if not cursor:
        return 0, "", "0"
    partition, _, rest = cursor.partition(":")
    scan_cursor, sep, node_id = rest.partition(":")
    if not (sep and node_id and scan_cursor.isdigit() and partition.isdigit()):
        raise InvalidQuery(f"not a listing cursor: {cursor!r}")
    return int(partition), node_id, scan_cursor


# -- merging the partitions' zsets ---------------------------------------------------------

Entry = tuple[str, str]  # (task id, score as Redis wrote it)


def place(entry: Entry) -> tuple[float, str]:
    """Where an entry sorts: by score, equal scores by id (as a zset orders them)."""
    return float(entry[1]), entry[0]


def merge(reads: Sequence[Sequence[Entry]], complete: Sequence[bool], descending: bool
          ) -> tuple[list[Entry], Entry | None]:
    """The entries read from every partition, in walking order, up to the frontier; and
    the frontier: the least far any partition not read to its end has got (None when
    every partition was read to its end). Entries beyond it wait for the next page, so
    no entry of a partition read less far is skipped."""
    ends = [read[-1] for read, done in zip(reads, complete, strict=True) if not done and read]
    if descending:
        frontier = max(ends, key=place) if ends else None
    else:
        frontier = min(ends, key=place) if ends else None
    entries = sorted((e for read in reads for e in read), key=place, reverse=descending)
    if frontier is not None:
        bound = place(frontier)
        entries = [e for e in entries if (place(e) >= bound if descending else place(e) <= bound)]
    return entries, frontier


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidQuery(f"page size must be in [1, {MAX_PAGE}], got {limit}")
    return limit


def bound(value: float | None) -> str:
    return "" if value is None else repr(value)

