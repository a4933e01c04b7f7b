"""The io tier's autoscaler: each tick a policy turns a load sample into a worker target.

The target is the warm floor of the thread pool: that many workers are started ahead
of demand and kept past their idle timeout. Demand beyond it still grows the pool
at once up to ``max_workers`` (ants' on-demand spawn), so the floor trades
thread-seconds for the latency of the next burst.

``AdaptivePolicy`` scores load as a weighted sum (0.40 arrival rate, 0.35 queue
depth, 0.25 GC frequency by default), each signal scaled to [0, 1], and maps the
score onto [min, max]. It moves up only after ``up_ticks`` consecutive ticks above
the current target and down after ``down_ticks`` below, ignoring changes inside
``deadband``, so a steady load does not flap. ``FixedPolicy`` always answers one size.
"""

from __future__ import annotations

import gc
import math
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

from ringpool.pool.settings import AutoscalerSettings
from ringpool.pool.threads import ThreadTier


@dataclass(frozen=True)
class LoadSample:
    arrivals_per_s: float
    queued: int
    avg_run_s: float
    gc_per_s: float
    min_workers: int
    max_workers: int


class ScalingPolicy(Protocol):
    def target(self, sample: LoadSample, current: int) -> int:
        """The worker target for this tick, given the current one."""
        ...


class FixedPolicy:
    def __init__(self, workers: int) -> None:
        self.workers = workers

    def target(self, sample: LoadSample, current: int) -> int:
        return self.workers


class AdaptivePolicy:
    def __init__(self, settings: AutoscalerSettings | None = None) -> None:
        self.settings = settings or AutoscalerSettings()
        self.last_score = 0.0
        self._up = self._down = 0
        self._streak_target = 0

    def score(self, sample: LoadSample) -> float:
        s = self.settings
        # Little's law: arrival rate x run time is the number of busy workers it needs.
        demand = min(1.0, sample.arrivals_per_s * sample.avg_run_s / sample.max_workers)
        depth = min(1.0, sample.queued / sample.max_workers)
        gc_load = min(1.0, sample.gc_per_s / s.gc_saturation_per_s)
        total = s.arrival_weight + s.queue_weight + s.gc_weight
        return (s.arrival_weight * demand + s.queue_weight * depth + s.gc_weight * gc_load) / total

    def target(self, sample: LoadSample, current: int) -> int:
        s = self.settings
        lo, hi = sample.min_workers, sample.max_workers
        span = hi - lo
        score = self.last_score = self.score(sample)
        desired = min(hi, lo + math.ceil(score * span))
        held = (current - lo) / span if span else 0.0
        if desired > current and score > held + s.deadband:
            self._streak_target = min(desired, self._streak_target) if self._up else desired
            self._up, self._down = self._up + 1, 0
            if self._up >= s.up_ticks:
                self._up = 0
                return self._streak_target  # the least the whole streak asked for
        elif desired < current and score < held - s.deadband:
            self._streak_target = max(desired, self._streak_target) if self._down else desired
            self._down, self._up = self._down + 1, 0
            if self._down >= s.down_ticks:
                self._down = 0
                return self._streak_target
        else:
            self._up = self._down = 0
        return current


class Autoscaler:
    """Ticks on its own thread; counts GC runs through ``gc.callbacks`` while it runs."""

    def __init__(self, tier: ThreadTier, policy: ScalingPolicy, tick_s: float) -> None:
        self.tier = tier
        self.policy = policy
        self.tick_s = tick_s
        self.changes = 0
        self._gc_runs = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_runs += 1

    def start(self) -> None:
        if self._thread is None:
            gc.callbacks.append(self._on_gc)
            self._thread = threading.Thread(target=self._run, name="ringpool-autoscaler",
                                            daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(5.0)
            gc.callbacks.remove(self._on_gc)
            self._thread = None

    def _run(self) -> None:
        last = time.monotonic()
        arrived, gc_runs = self.tier.submitted, self._gc_runs
        while not self._stop.wait(self.tick_s):
            now = time.monotonic()
            elapsed = max(now - last, 1e-6)
            stats = self.tier.stats()
            sample = LoadSample(
                arrivals_per_s=(stats["submitted"] - arrived) / elapsed,
                queued=int(stats["queued"]),
                avg_run_s=stats["avg_run_s"],
                gc_per_s=(self._gc_runs - gc_runs) / elapsed,
                min_workers=int(stats["min_workers"]),
                max_workers=int(stats["max_workers"]),
            )
            last, arrived, gc_runs = now, int(stats["submitted"]), self._gc_runs
            self.step(sample, int(stats["target"]))

    def step(self, sample: LoadSample, current: int) -> int:
        """Ask the policy once and apply its answer; returns the target in force."""
        target = self.policy.target(sample, current)
        if target != current:
            self.changes += 1  # counted first: whoever sees the new size sees the change too
            self.tier.set_target(target)
        return target
