"""The task model: ``Task`` messages, the ``@task`` registry and retry policies.

Importing a task module only fills the in-process registry; it never touches
the network.
"""

from __future__ import annotations

import inspect
import json
import math
import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import Any, Generic, Literal, ParamSpec, TypeVar

from ringpool.errors import ConfigError, InvalidProgress

Kind = Literal["io", "cpu", "async"]
KINDS: tuple[str, ...] = ("io", "cpu", "async")
DEFAULT_TIMEOUT_S = 300.0
MAX_TIMEOUT_S = 24 * 3600.0
MAX_RETRIES_LIMIT = 100
PRIORITY_LIMIT = 1_000_000
MAX_RESULT_TTL_S = 365 * 24 * 3600
MAX_PROGRESS_META_BYTES = 4096
DEFAULT_GROUP = ""  # the group of nodes started without --group, and of tasks that name none
_GROUP = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:/\s*(s|sec|m|min|h))?\s*$")
_RATE_UNITS_S = {None: 1.0, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}

P = ParamSpec("P")
R = TypeVar("R")


def valid_group(name: object) -> bool:
    """Whether ``name`` is a task group: '' (the default group) or 1-64 of [A-Za-z0-9_.-]."""
    return name == DEFAULT_GROUP or (isinstance(name, str) and bool(_GROUP.match(name)))


def check_group(name: object) -> str:
    if not valid_group(name):
        raise ConfigError(f"invalid group {name!r}: use 1-64 of [A-Za-z0-9_.-] ('' is the "
                          "default group)")
    return str(name)


def parse_rate(rate: str | float) -> float:
    """A rate as tasks per second: ``"100/s"``, ``"600/m"``, ``"10/h"``, or a number (per
    second); ConfigError unless it is a finite rate above 0."""
    if isinstance(rate, bool) or not isinstance(rate, str | int | float):
        raise ConfigError(f"a rate is text like '100/s' or a number, got {rate!r}")
    if isinstance(rate, str):
        match = _RATE.match(rate.lower())
        if not match:
            raise ConfigError(f"{rate!r} is not a rate (use e.g. 100/s, 600/m, 10/h)")
        per_s = float(match.group(1)) / _RATE_UNITS_S[match.group(2)]
    else:
        per_s = float(rate)
    if not (per_s > 0 and math.isfinite(per_s)):
        raise ConfigError(f"a rate must be above 0, got {rate!r}")
    return per_s


def check_result_ttl(seconds: object) -> int:
    """A result TTL as whole seconds (rounded up), in [1, MAX_RESULT_TTL_S]; ConfigError else."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) \
            or not 0 < seconds <= MAX_RESULT_TTL_S:
        raise ConfigError(f"result_ttl must be a number of seconds in (0, {MAX_RESULT_TTL_S}], "
                          f"got {seconds!r}")
    return math.ceil(seconds)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter: attempt n waits up to base * factor**(n-1)."""

    max_retries: int = 3
    base_s: float = 1.0
    factor: float = 2.0
    cap_s: float = 300.0
    jitter: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.max_retries <= MAX_RETRIES_LIMIT:
            raise ConfigError(f"max_retries must be in [0, {MAX_RETRIES_LIMIT}]")
        if self.base_s < 0 or self.cap_s < 0 or self.factor < 1:
            raise ConfigError("base_s and cap_s must be >= 0 and factor >= 1")

    def ceiling_s(self, failed_attempt: int) -> float:
        """The longest wait after the ``failed_attempt``-th failure (1-based)."""
        return min(self.cap_s, self.base_s * self.factor ** max(0, failed_attempt - 1))

    def delay_s(self, failed_attempt: int) -> float:
        ceiling = self.ceiling_s(failed_attempt)
        return random.uniform(0, ceiling) if self.jitter else ceiling


class Retry(Exception):
    """Raise from a task to run it again after ``countdown`` seconds (counts as an attempt)."""

    def __init__(self, countdown: float | None = None, reason: str = "") -> None:
        super().__init__(reason or "retry requested")
        self.countdown = countdown


class PermanentError(Exception):
    """Raise from a task for a failure that retrying cannot fix: straight to the DLQ."""


@dataclass(frozen=True)
class Task:
    """One unit of work: a registered task name and its JSON arguments."""

    name: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    idempotency_key: str | None = None
    max_retries: int | None = None
    timeout: float | None = None
    priority: int = 0
    ordered: bool = False
    #: The group of nodes to run it on; None: the group whose nodes serve its name.
    group: str | None = None
    #: Seconds its record and result are kept after it succeeds; None: the cluster's TTL.
    result_ttl: float | None = None

    def with_options(self, **changes: Any) -> Task:
        return replace(self, **changes)


@dataclass(frozen=True)
class TaskProgress:
    """How far a running task says it has come: ``value`` (a fraction, a count: the task's
    choice), optional JSON ``meta``, and ``at``, when it said so (unix seconds)."""

    value: float
    meta: Mapping[str, Any] | None = None
    at: float = 0.0

    @classmethod
    def checked(cls, value: object, meta: object = None, at: float | None = None) -> TaskProgress:
        """A report of these values; InvalidProgress for a value that is not a finite number
        or meta that is not a JSON object of at most ``MAX_PROGRESS_META_BYTES``."""
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or not math.isfinite(value):
            raise InvalidProgress(f"progress must be a finite number, got {value!r}")
        if meta is not None:
            if not isinstance(meta, Mapping) or not all(isinstance(k, str) for k in meta):
                raise InvalidProgress(f"progress meta must be a mapping with text keys, "
                                      f"got {type(meta).__name__}")
            try:
                size = len(json.dumps(meta, allow_nan=False, separators=(",", ":")).encode())
            except (TypeError, ValueError) as exc:
                raise InvalidProgress(f"progress meta is not JSON: {exc}") from None
            if size > MAX_PROGRESS_META_BYTES:
                raise InvalidProgress(f"progress meta is {size} bytes as JSON; the limit is "
                                      f"{MAX_PROGRESS_META_BYTES}")
            meta = dict(meta)
        return cls(float(value), meta, time.time() if at is None else at)


@dataclass
class TaskContext:
    """What a running task may ask about itself.

    ``cancelled`` is set at its deadline and when the task is cancelled; ``eta`` is the
    unix time a delayed task or a schedule's tick was due (0.0 for a task sent to run
    at once).
    """

    task_id: str
    key: str
    name: str
    attempt: int
    deadline: float
    cancelled: threading.Event = field(default_factory=threading.Event)
    headers: Mapping[str, str] = field(default_factory=dict)
    node_id: str = ""
    eta: float = 0.0
    #: Where ``progress()`` reports go, set by what runs the task (None: nowhere).
    on_progress: Callable[[TaskProgress], None] | None = field(
        default=None, repr=False, compare=False)

    def progress(self, value: float, meta: Mapping[str, Any] | None = None) -> None:
        """Report how far the task has come (``handle.progress()`` reads it): call it as
        often as you like, the node passes on the latest report a few times a second.
        InvalidProgress for a value that is not a finite number, or meta that is not a
        small JSON object."""
        report = TaskProgress.checked(value, meta)
        if self.on_progress is not None:
            self.on_progress(report)


_current: ContextVar[TaskContext | None] = ContextVar("ringpool_task_context", default=None)


def current_task() -> TaskContext | None:
    """The context of the task running in this thread or coroutine, if any."""
    return _current.get()


def set_current_task(ctx: TaskContext | None) -> Any:
    return _current.set(ctx)


@dataclass(frozen=True)
class TaskDefinition(Generic[P, R]):
    """A function registered under a task name, with its declared options."""

    name: str
    fn: Callable[P, R]
    kind: Kind
    timeout: float
    retry: RetryPolicy
    priority: int = 0
    ordered: bool = False
    group: str = DEFAULT_GROUP
    rate_limit_per_s: float | None = None  # cluster-wide starts per second; None: unlimited
    result_ttl_s: int | None = None  # None: the cluster's result TTL

    def s(self, *args: P.args, **kwargs: P.kwargs) -> Task:
        """A ``Task`` calling this definition with these arguments (Celery's signature)."""
        return Task(
            self.name,
            args=tuple(args),
            kwargs=dict(kwargs),
            max_retries=self.retry.max_retries,
            timeout=self.timeout,
            priority=self.priority,
            ordered=self.ordered,
            group=self.group,
            result_ttl=self.result_ttl_s,
        )

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)


REGISTRY: dict[str, TaskDefinition[Any, Any]] = {}
_registry_lock = threading.Lock()


def tasks_of_group(group: str) -> dict[str, TaskDefinition[Any, Any]]:
    """The registered tasks that run in ``group`` (what a node of that group serves)."""
    with _registry_lock:
        return {name: d for name, d in REGISTRY.items() if d.group == group}


def task(
    name: str,
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
    max_retries: int | None = None,
    kind: Kind | None = None,
    retry: RetryPolicy | None = None,
    priority: int = 0,
    ordered: bool = False,
    group: str = DEFAULT_GROUP,
    rate_limit: str | float | None = None,
    result_ttl: float | None = None,
) -> Callable[[Callable[P, R]], TaskDefinition[P, R]]:
    """Register a function as task ``name``; options are checked here, not at first run.

    ``group``: only nodes started with ``--group GROUP`` run it ('' : nodes without one).
    ``rate_limit``: at most this many starts cluster-wide (``"100/s"``, ``"600/m"``);
    the rest wait. ``result_ttl``: seconds its result is kept (default: the cluster's).
    """
    if not name or len(name) > 200:
        raise ConfigError("a task name must be 1-200 characters")
    if not 0 < timeout <= MAX_TIMEOUT_S:
        raise ConfigError(f"timeout must be in (0, {MAX_TIMEOUT_S}] seconds")
    group = check_group(group)
    rate_per_s = None if rate_limit is None else parse_rate(rate_limit)
    ttl_s = None if result_ttl is None else check_result_ttl(result_ttl)
    policy = retry or RetryPolicy()
    if max_retries is not None:
        policy = replace(policy, max_retries=max_retries)

    def register(fn: Callable[P, R]) -> TaskDefinition[P, R]:
        is_async = inspect.iscoroutinefunction(fn)
        resolved: Kind = kind or ("async" if is_async else "io")
        if resolved not in KINDS:
            raise ConfigError(f"kind must be one of {KINDS}, got {resolved!r}")
        if (resolved == "async") != is_async:
            raise ConfigError(f"task {name!r}: kind='async' requires an async def, and only it")
        definition = TaskDefinition(name, fn, resolved, timeout, policy, priority, ordered,
                                    group, rate_per_s, ttl_s)
        with _registry_lock:
            existing = REGISTRY.get(name)
            if existing is not None and existing.fn.__qualname__ != fn.__qualname__:
                raise ConfigError(f"task name {name!r} is already registered")
            REGISTRY[name] = definition
        return definition

    return register
