"""The workload: unique tasks at a steady rate, some ordered, some failing, some hanging.

Several producer threads share the rate, so one dispatch held up by a fault does
not stop the others. Each producer draws its tasks from its own seeded generator.
A task counts as accepted once its handle's ``accepted()`` returned; it is written
to the history then. A refusal (or no answer within the client's accept timeout)
is counted by its type, never retried, and the task is not checked.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass

from ringpool import Cluster, Task
from ringpool.errors import RingpoolError
from tests.nemesis.history import Accepted, History
from tests.nemesis.tasks import TASKS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Mix:
    """What the workload sends, and how fast."""

    rate_per_s: float = 20.0
    fail: float = 0.08  # share of nemesis.fail (ends in the DLQ)
    hang: float = 0.03  # share of nemesis.hang (times out, ends in the DLQ)
    ordered: float = 0.3  # share sent ordered=True, on a few shared keys
    ordered_keys: int = 8
    work_sleep_s: tuple[float, float] = (0.005, 1.0)  # long enough to be caught running
    hang_s: float = 3.0  # how long a hanging task sleeps (its timeout is 1 s)
    producers: int = 4


class Workload:
    def __init__(self, cluster: Cluster, history: History, seed: int, mix: Mix) -> None:
        self.cluster = cluster
        self.history = history
        self.seed = seed
        self.mix = mix
        self.accepted = 0
        self.refused = 0
        self._count_lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._produce, args=(i,), name=f"nemesis-producer-{i}",
                             daemon=True)
            for i in range(mix.producers)
        ]

    def start(self) -> Workload:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, timeout: float = 90.0) -> None:
        """Stop producing; returns once every dispatch in progress has its answer."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)

    def draw(self, rng: random.Random, producer: int, n: int) -> tuple[str, str, Task]:
        """The ``n``-th task of ``producer``: its kind, key and ``Task``."""
        mix = self.mix
        roll = rng.random()
        kind = "fail" if roll < mix.fail else "hang" if roll < mix.fail + mix.hang else "work"
        ordered = rng.random() < mix.ordered
        key = f"ord:{rng.randrange(mix.ordered_keys)}" if ordered else f"u:{producer}:{n}"
        argument: object = {"work": round(rng.uniform(*mix.work_sleep_s), 3),
                            "fail": f"{key} fails as planned", "hang": mix.hang_s}[kind]
        return kind, key, TASKS[kind].s(argument).with_options(ordered=ordered)

    def _produce(self, producer: int) -> None:
        rng = random.Random(f"{self.seed}:{producer}")
        interval = self.mix.producers / self.mix.rate_per_s
        next_at = time.monotonic()
        n = 0
        while not self._stop.wait(max(0.0, next_at - time.monotonic())):
            next_at = max(next_at + interval, time.monotonic())  # never bursts to catch up
            kind, key, task = self.draw(rng, producer, n)
            n += 1
            sent = time.monotonic()
            try:
                task_id = self.cluster.dispatch(key, task).accepted()  # bounded by the client
            except Exception as exc:  # a refusal; one that is not a RingpoolError stands out
                if not isinstance(exc, RingpoolError):
                    log.exception("dispatch raised an undocumented %s", type(exc).__name__)
                self.history.refused(exc)
                with self._count_lock:
                    self.refused += 1
                continue
            self.history.accepted(Accepted(task_id, key, kind, task.ordered, time.time(),
                                           time.monotonic() - sent))
            with self._count_lock:
                self.accepted += 1
