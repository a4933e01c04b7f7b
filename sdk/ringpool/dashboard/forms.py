"""What operators type into the pages, parsed, or refused with a message saying why."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlencode

from ringpool.dashboard.auth import Refused
from ringpool.ops.units import parse_duration, parse_rate
from ringpool.store.listing import InvalidQuery, TaskQuery

PAGE_SIZES = (25, 50, 100, 200)
MAX_IDS = 1000  # task ids one form may name


class BadInput(Refused):
    """An input that cannot mean anything; nothing was read or changed."""

    def __init__(self, message: str) -> None:
        super().__init__(400, message)


def parse_time(text: str, field: str, now: float | None = None) -> float | None:
    """'' -> None; a duration (``2h``: that long ago) or an ISO date and time (UTC unless it
    says otherwise) -> unix seconds."""
    text = text.strip()
    if not text:
        return None
    try:
        return (now or time.time()) - parse_duration(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadInput(f"{field}: {text!r} is neither a duration (e.g. 2h) nor a date and time "
                       "(e.g. 2026-01-31T09:30)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


@dataclass(frozen=True)
class Filters:
    """A listing's filters as typed (kept to fill the form again) and as a query."""

    name: str = ""
    error: str = ""
    key: str = ""
    since: str = ""
    until: str = ""
    node: str = ""

    @classmethod
    def read(cls, values: Mapping[str, str]) -> Filters:
        return cls(**{f: str(values.get(f, "")).strip() for f in
                      ("name", "error", "key", "since", "until", "node")})

    def query(self) -> TaskQuery:
        with bad_query_refused():
            return TaskQuery(name=self.name, error=self.error, key=self.key,
                             since=parse_time(self.since, "since"),
                             until=parse_time(self.until, "until"), node=self.node)

    def without_time(self) -> Filters:
        return Filters(self.name, self.error, self.key, node=self.node)

    @property
    def active(self) -> bool:
        return any((self.name, self.error, self.key, self.since, self.until, self.node))

    def describe(self) -> str:
        parts = [f"{label} {value}" for label, value in (
            ("task", self.name), ("error", self.error), ("key", self.key),
            ("since", self.since), ("until", self.until), ("node", self.node)) if value]
        return ", ".join(parts) or "every entry"

    def params(self, **extra: str) -> str:
        """The filters (and ``extra``) as a query string."""
        values = {k: v for k, v in self.__dict__.items() if v}
        values.update({k: v for k, v in extra.items() if v})
        return urlencode(values)


def page_size(values: Mapping[str, str], default: int = 50) -> int:
    raw = str(values.get("limit", "") or default)
    if not raw.isdigit() or int(raw) not in PAGE_SIZES:
        raise BadInput(f"page size must be one of {', '.join(map(str, PAGE_SIZES))}, got {raw!r}")
    return int(raw)


@dataclass(frozen=True)
class Paging:
    """The page of a listing asked for: its filters (and their query), size and cursor."""

    filters: Filters
    query: TaskQuery
    limit: int
    cursor: str | None

    @classmethod
    def read(cls, values: Mapping[str, str]) -> Paging:
        filters = Filters.read(values)
        return cls(filters, filters.query(), page_size(values), values.get("cursor") or None)


@contextlib.contextmanager
def bad_query_refused() -> Iterator[None]:
    """A listing's InvalidQuery (its filters, or a cursor that means nothing) as BadInput."""
    try:
        yield
    except InvalidQuery as exc:
        raise BadInput(str(exc)) from None


def rate(text: str) -> float | None:
    """'' -> no limit; ``100/s``, ``600/m`` -> tasks per second."""
    if not text.strip():
        return None
    try:
        return parse_rate(text)
    except ValueError as exc:
        raise BadInput(f"rate: {exc}") from None


def task_ids(values: list[str]) -> list[str]:
    """Distinct ids in the order given."""
    ids = list(dict.fromkeys(v.strip() for v in values if v.strip()))
    if len(ids) > MAX_IDS:
        raise BadInput(f"at most {MAX_IDS} task ids at once, got {len(ids)}")
    if any(len(i) > 128 or not i.isprintable() for i in ids):
        raise BadInput("a task id is at most 128 printable characters")
    return ids
