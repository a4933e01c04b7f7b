"""The coordinator's Prometheus metrics (served on ``--metrics-port``): events that count.

Sizes of the retry set and the DLQ are read through the state store when
Prometheus scrapes: the scrape's thread asks the coordinator's event loop and
waits at most ``SIZES_TIMEOUT_S`` (a scrape during a Redis outage just leaves
them out). Every replica reports the sizes; only the leader's counters move, and
``ringpool_coordinator_leader`` says which one leads.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ringpool.store.store import QueueSizes, Recovery, StateStore
from ringpool_coordinator.events import CoordinatorEvents

log = logging.getLogger(__name__)

SIZES_TIMEOUT_S = 2.0
LAG_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class CoordinatorMetrics(CoordinatorEvents, Collector):
    def __init__(self, store: StateStore, loop: asyncio.AbstractEventLoop,
                 registry: CollectorRegistry = REGISTRY) -> None:
        self.store = store
        self._loop = loop  # the store's loop: sizes are read there
        self._leading = False

        def counter(name: str, doc: str) -> Counter:
            return Counter(name, doc, registry=registry)

        self.retry_lag = Histogram(
            "ringpool_retry_lag_seconds",
            "How late the oldest due retry was when the leader claimed it, in seconds.",
            buckets=LAG_BUCKETS_S, registry=registry,
        )
        self.fired = counter("ringpool_retries_fired", "Due retries re-dispatched and accepted.")
        self.buried = counter("ringpool_retries_buried",
                              "Due retries whose re-dispatch was refused, moved to the DLQ.")
        self.recovered = counter("ringpool_tasks_recovered",
                                 "In-flight tasks of dead nodes moved to the retry set.")
        self.poisoned = counter("ringpool_tasks_poisoned",
                                "Tasks of dead nodes sent to the DLQ after too many crash "
                                "recoveries.")
        self.expired = counter("ringpool_dlq_expired",
                               "Dead letters removed for being older than the retention.")
        registry.register(self)

    # -- events --------------------------------------------------------------------------

    def leading(self, leading: bool) -> None:
        self._leading = leading

    def retries_claimed(self, lag_s: float) -> None:
        self.retry_lag.observe(lag_s)

    def retries_fired(self, count: int) -> None:
        self.fired.inc(count)

    def retries_buried(self, count: int) -> None:
        self.buried.inc(count)

    def dead_node_recovered(self, recovery: Recovery) -> None:
        self.recovered.inc(recovery.recovered)
        self.poisoned.inc(recovery.poisoned)

    def dead_letters_expired(self, count: int) -> None:
        self.expired.inc(count)

    # -- read at each scrape --------------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("ringpool_coordinator_leader", "1 on the leading replica, else 0.",
                                value=int(self._leading))
        sizes = self._queue_sizes()
        if sizes is not None:
            yield GaugeMetricFamily("ringpool_retry_set_size",
                                    "Tasks waiting in the retry set (due or not).",
                                    value=sizes.retries)
            yield GaugeMetricFamily("ringpool_dlq_size", "Tasks in the dead-letter queue.",
                                    value=sizes.dlq)

    def _queue_sizes(self) -> QueueSizes | None:
        """The sizes, read on the store's loop; None when they do not come in time (or
        when called on that loop itself, as registering does: it must not block)."""
        try:
            if asyncio.get_running_loop() is self._loop:
                return None
        except RuntimeError:
            pass  # a scrape's thread: no loop of its own
        future = asyncio.run_coroutine_threadsafe(self.store.queue_sizes(), self._loop)
        try:
            return future.result(SIZES_TIMEOUT_S)
        except Exception as exc:
            future.cancel()
            log.debug("cannot read queue sizes for a scrape: %s", exc)
            return None
