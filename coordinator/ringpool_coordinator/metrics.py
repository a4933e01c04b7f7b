"""The coordinator's Prometheus metrics (served on ``--metrics-port``): events that count.

Sizes of the retry set and the DLQ are read from Redis when Prometheus scrapes
(two ZCARDs in one pipeline, with a short timeout; a scrape during a Redis outage
just leaves them out). Every replica reports the sizes; only the leader's counters
move, and ``ringpool_coordinator_leader`` says which one leads.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import redis
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ringpool.core.naming import Names
from ringpool.store.store import Recovery
from ringpool_coordinator.events import CoordinatorEvents

log = logging.getLogger(__name__)

LAG_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class CoordinatorMetrics(CoordinatorEvents, Collector):
    def __init__(self, redis_url: str, cluster: str,
                 registry: CollectorRegistry = REGISTRY) -> None:
        self.names = Names(cluster)
        self._leading = False
        self._redis = redis.Redis.from_url(redis_url, socket_timeout=2.0,
                                           socket_connect_timeout=2.0)

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
        try:
            with self._redis.pipeline(transaction=False) as pipe:
                pipe.zcard(self.names.retries)
                pipe.zcard(self.names.dlq)
                retries, dlq = pipe.execute()
        except redis.RedisError as exc:
            log.debug("cannot read queue sizes for a scrape: %s", exc)
        else:
            yield GaugeMetricFamily("ringpool_retry_set_size",
                                    "Tasks waiting in the retry set (due or not).", value=retries)
            yield GaugeMetricFamily("ringpool_dlq_size", "Tasks in the dead-letter queue.",
                                    value=dlq)

    def close(self) -> None:
        self._redis.close()
