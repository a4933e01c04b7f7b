"""The task model: ``Task`` messages, the ``@task`` registry and retry policies.

Importing a task module only fills the in-process registry; it never touches
the network.
"""

from __future__ import annotations

import inspect
import random
import threading
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import Any, Generic, Literal, ParamSpec, TypeVar

from ringpool.errors import ConfigError

Kind = Literal["io", "cpu", "async"]
KINDS: tuple[str, ...] = ("io", "cpu", "async")
DEFAULT_TIMEOUT_S = 300.0
MAX_TIMEOUT_S = 24 * 3600.0
MAX_RETRIES_LIMIT = 100
PRIORITY_LIMIT = 1_000_000

P = ParamSpec("P")
R = TypeVar("R")


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

    def with_options(self, **changes: Any) -> Task:
        return replace(self, **changes)


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
        )

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)


REGISTRY: dict[str, TaskDefinition[Any, Any]] = {}
_registry_lock = threading.Lock()


def task(
    name: str,
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
    max_retries: int | None = None,
    kind: Kind | None = None,
    retry: RetryPolicy | None = None,
    priority: int = 0,
    ordered: bool = False,
) -> Callable[[Callable[P, R]], TaskDefinition[P, R]]:
    """Register a function as task ``name``; options are checked here, not at first run."""
    if not name or len(name) > 200:
        raise ConfigError("a task name must be 1-200 characters")
    if not 0 < timeout <= MAX_TIMEOUT_S:
        raise ConfigError(f"timeout must be in (0, {MAX_TIMEOUT_S}] seconds")
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
        definition = TaskDefinition(name, fn, resolved, timeout, policy, priority, ordered)
        with _registry_lock:
            existing = REGISTRY.get(name)
            if existing is not None and existing.fn.__qualname__ != fn.__qualname__:
                raise ConfigError(f"task name {name!r} is already registered")
            REGISTRY[name] = definition
        return definition

    return register
