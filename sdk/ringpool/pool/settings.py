"""Typed pool settings; every time is in seconds and every check raises ``ConfigError``."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal

from ringpool.errors import ConfigError


def check_workers(min_workers: int, max_workers: int) -> tuple[int, int]:
    """Validate a (min, max) worker pair as used by settings and ``tune()``."""
    for name, value in (("min_workers", min_workers), ("max_workers", max_workers)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} must be an int, got {value!r}")
    if min_workers < 0 or max_workers < 1 or min_workers > max_workers:
        raise ConfigError(
            f"need 0 <= min_workers <= max_workers and max_workers >= 1, "
            f"got min={min_workers} max={max_workers}"
        )
    return min_workers, max_workers


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(f"{name} must be > 0, got {value!r}")


@dataclass(frozen=True)
class AutoscalerSettings:
    """The io tier's autoscaler: a weighted load score mapped onto [min, max] workers."""

    policy: Literal["adaptive", "fixed"] = "adaptive"
    tick_s: float = 0.1
    arrival_weight: float = 0.40
    queue_weight: float = 0.35
    gc_weight: float = 0.25
    up_ticks: int = 3
    down_ticks: int = 5
    # A score change smaller than this is noise, not a reason to resize.
    deadband: float = 0.05
    # GC collections per second that count as full pressure.
    gc_saturation_per_s: float = 50.0

    def __post_init__(self) -> None:
        if self.policy not in ("adaptive", "fixed"):
            raise ConfigError(f"policy must be 'adaptive' or 'fixed', got {self.policy!r}")
        _positive("tick_s", self.tick_s)
        _positive("gc_saturation_per_s", self.gc_saturation_per_s)
        weights = (self.arrival_weight, self.queue_weight, self.gc_weight)
        if min(weights) < 0 or sum(weights) <= 0:
            raise ConfigError("autoscaler weights must be >= 0 and not all zero")
        if self.up_ticks < 1 or self.down_ticks < 1:
            raise ConfigError("up_ticks and down_ticks must be >= 1")
        if not 0 <= self.deadband < 1:
            raise ConfigError("deadband must be in [0, 1)")


@dataclass(frozen=True)
class CpuSettings:
    """The process tier: at most one process per CPU, optionally capped and pinned."""

    processes: int = field(default_factory=lambda: os.cpu_count() or 1)
    max_queue: int = 1_000
    # RLIMIT_AS for each worker process, in bytes; None leaves it unlimited.
    memory_limit_bytes: int | None = None
    # Worker i is pinned to cpu_affinity[i % len(cpu_affinity)]; None leaves scheduling alone.
    cpu_affinity: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        cpus = os.cpu_count() or 1
        if not 1 <= self.processes <= cpus:
            raise ConfigError(f"processes must be in [1, {cpus}] (the CPU count)")
        if self.max_queue < 0:
            raise ConfigError("max_queue must be >= 0")
        if self.memory_limit_bytes is not None and self.memory_limit_bytes < 16 * 2**20:
            raise ConfigError("memory_limit_bytes must be at least 16 MiB")
        if self.cpu_affinity is not None and (
            not self.cpu_affinity or any(c < 0 or c >= cpus for c in self.cpu_affinity)
        ):
            raise ConfigError(f"cpu_affinity must name CPUs in [0, {cpus})")


@dataclass
class PoolSettings:
    """The io thread tier's bounds plus the other tiers' settings."""

    min_workers: int = 4
    max_workers: int = 32
    max_queue: int = 10_000
    # Workers above the floor exit after this long with no work.
    idle_timeout_s: float = 10.0
    # How many async handlers may run at once on the event loop.
    async_concurrency: int = 1_000
    # io threads abandoned past their task's deadline (Python cannot stop them) that may
    # still run before the pool is wedged; they are replaced up to this many extra threads.
    max_abandoned: int = 16
    autoscaler: AutoscalerSettings = field(default_factory=AutoscalerSettings)
    cpu: CpuSettings = field(default_factory=CpuSettings)

    def __post_init__(self) -> None:
        check_workers(self.min_workers, self.max_workers)
        if self.max_queue < 0:
            raise ConfigError("max_queue must be >= 0")
        _positive("idle_timeout_s", self.idle_timeout_s)
        if self.async_concurrency < 1:
            raise ConfigError("async_concurrency must be >= 1")
        if self.max_abandoned < 1:
            raise ConfigError("max_abandoned must be >= 1")
