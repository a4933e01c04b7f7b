"""Client-side Prometheus metrics: dispatch latency, resends, delayed tasks and cancels.

One ``ClientMetrics`` per registry (several clients in a process share it, since a
registry refuses the same name twice). Pass ``registry=`` to ``AsyncCluster`` or
``Cluster.connect`` to keep a client's metrics apart (tests do); the default is
prometheus_client's global registry. Counting is per call or per group of tasks,
never per task.
"""

from __future__ import annotations

import threading
import time

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

# Dispatch rides an open stream: 0.2 ms is fast, seconds means back-off or a re-route.
LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                     2.5, 5.0, 10.0, 30.0)
RESEND_REASONS = ("wrong_owner", "draining", "overloaded", "internal", "unreachable")


class ClientMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.dispatch_seconds = Histogram(
            "ringpool_client_dispatch_seconds",
            "Time from dispatch() (or dispatch_many()) to its last task's durable accept or "
            "refusal, in seconds.",
            ["op"], buckets=LATENCY_BUCKETS_S, registry=registry,
        )
        self.resends = Counter(
            "ringpool_client_resends",
            "Tasks the client sent again, by why (a moved owner, a draining or busy node...).",
            ["reason"], registry=registry,
        )
        self.delayed = Counter(
            "ringpool_client_delayed",
            "Tasks dispatched with a countdown or an eta (held until then).", registry=registry,
        )
        self.cancels = Counter(
            "ringpool_client_cancels",
            "Cancel calls, by outcome: cancelled, finished (it already had its outcome) or "
            "not_found.", ["outcome"], registry=registry,
        )
        self.dispatch = self.dispatch_seconds.labels("dispatch")
        self.dispatch_many = self.dispatch_seconds.labels("dispatch_many")
        self.resend = {reason: self.resends.labels(reason) for reason in RESEND_REASONS}


class CallTimer:
    """Observes one call's latency once the last of its tasks is settled (on the loop)."""

    __slots__ = ("_histogram", "_left", "_started")

    def __init__(self, histogram: Histogram, tasks: int) -> None:
        self._histogram = histogram
        self._left = tasks
        self._started = time.perf_counter()

    def settled(self) -> None:
        self._left -= 1
        if not self._left:
            self._histogram.observe(time.perf_counter() - self._started)


_by_registry: dict[int, tuple[CollectorRegistry, ClientMetrics]] = {}
_lock = threading.Lock()


def client_metrics(registry: CollectorRegistry | None = None) -> ClientMetrics:
    """The metrics of ``registry`` (the global one by default), created on first use."""
    registry = REGISTRY if registry is None else registry
    with _lock:
        entry = _by_registry.get(id(registry))
        if entry is None or entry[0] is not registry:
            entry = (registry, ClientMetrics(registry))
            _by_registry[id(registry)] = entry
        return entry[1]
