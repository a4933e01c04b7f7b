"""The coordinator's Prometheus metrics (served on ``--metrics-port``): events that count.

Sizes of the retry set, the scheduled set and the DLQ are read through the state store when
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

from ringpool.store.store import QueueSizes, Recovery, StateStore, Waiting
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

        def lag(name: str, doc: str, labels: tuple[str, ...] = ()) -> Histogram:
            return Histogram(name, doc, labels, buckets=LAG_BUCKETS_S, registry=registry)

        self.lag = {
            Waiting.RETRY: lag("ringpool_retry_lag_seconds",
                               "How late the oldest due retry was when the leader claimed it, "
                               "in seconds."),
            Waiting.SCHEDULED: lag("ringpool_delay_lag_seconds",
                                   "How late the oldest due delayed task (or schedule tick) was "
                                   "when the leader claimed it, in seconds."),
        }
        self.fired = {
            Waiting.RETRY: counter("ringpool_retries_fired",
                                   "Due retries re-dispatched and accepted."),
            Waiting.SCHEDULED: counter("ringpool_delayed_fired",
                                       "Due delayed tasks and schedule ticks dispatched and "
                                       "accepted."),
        }
        self.buried = {
            Waiting.RETRY: counter("ringpool_retries_buried",
                                   "Due retries whose re-dispatch was refused, moved to the DLQ."),
            Waiting.SCHEDULED: counter("ringpool_delayed_buried",
                                       "Due delayed tasks whose dispatch was refused, moved to "
                                       "the DLQ."),
        }
        self.ticks = Counter("ringpool_schedule_ticks", "Schedule ticks claimed (made into tasks).",
                             ["schedule"], registry=registry)
        self.skipped = Counter("ringpool_schedule_ticks_skipped",
                               "Schedule ticks missed while no coordinator led, coalesced into "
                               "the next tick fired.", ["schedule"], registry=registry)
        self.tick_lag = lag("ringpool_schedule_lag_seconds",
                            "How late a schedule's tick was when the leader claimed it, in "
                            "seconds.")
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

    def due_claimed(self, waiting: Waiting, lag_s: float) -> None:
        self.lag[waiting].observe(lag_s)

    def due_fired(self, waiting: Waiting, count: int) -> None:
        self.fired[waiting].inc(count)

    def due_buried(self, waiting: Waiting, count: int) -> None:
        self.buried[waiting].inc(count)

    def schedule_ticked(self, name: str, lag_s: float, skipped: int) -> None:
        self.ticks.labels(name).inc()
        self.tick_lag.observe(lag_s)
        if skipped:
            self.skipped.labels(name).inc(skipped)

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
            yield GaugeMetricFamily("ringpool_scheduled_set_size",
                                    "Delayed tasks and schedule ticks waiting for their eta.",
                                    value=sizes.scheduled)

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
