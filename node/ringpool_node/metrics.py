"""The node's Prometheus metrics (served on ``--metrics-port``): ``NodeEvents`` that count.

Counters move per batch (``inc(n)`` once per task name and outcome), never per
task; they are the node's only counts (the Status RPC reports their totals).
Gauges are read from ``Node.snapshot()`` when Prometheus scrapes. Histograms are
observed per task by a pool middleware on the thread that runs it. Labels are
bounded: task name (names not registered on this node are counted as
``unregistered``), reason, tier, state, op.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from kazoo.client import KazooClient
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ringpool.core import telemetry
from ringpool.store.store import Recovery, TransitionOp
from ringpool.task import REGISTRY as TASKS
from ringpool.v1 import node_pb2 as pb
from ringpool_node.core import Node, NodeSnapshot
from ringpool_node.events import NodeEvents

log = logging.getLogger(__name__)

DURATION_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                      2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
ROUND_TRIP_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                        0.25, 0.5, 1.0, 2.5)
UNREGISTERED = "unregistered"
ACK_REASONS = {code: name.lower() for name, code in pb.AckCode.items()}
TIERS = ("io", "cpu", "async")


def task_label(name: str) -> str:
    """A task name as a label value: only names this node has registered (bounded)."""
    return name if name in TASKS else UNREGISTERED


class NodeMetrics(NodeEvents):
    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.registry = registry

        def counter(name: str, doc: str, labels: Sequence[str] = ("task",)) -> Counter:
            return Counter(name, doc, list(labels), registry=registry)

        self.accepted = counter("ringpool_tasks_accepted", "Tasks durably accepted.")
        self.duplicated = counter("ringpool_tasks_duplicated",
                                  "Tasks answered with an earlier task's id (idempotency).")
        self.rejected = counter("ringpool_tasks_rejected",
                                "Tasks refused before anything was written, by reason.",
                                ("task", "reason"))
        self.succeeded = counter("ringpool_tasks_succeeded", "Tasks that succeeded.")
        self.failed = counter("ringpool_tasks_failed",
                              "Task attempts that failed (each is then retried or dead-lettered).")
        self.retried = counter("ringpool_tasks_retried", "Failed attempts scheduled for a retry.")
        self.dead_lettered = counter("ringpool_tasks_dead_lettered", "Tasks moved to the DLQ.")
        self.stopped_runs = counter(
            "ringpool_runs_stopped",
            "Runs stopped on this node, by reason: cancelled (the task was cancelled) or "
            "not_ours (Redis no longer held the task in flight for this node).",
            ("task", "reason"))
        self.stale_outcomes = counter(
            "ringpool_outcomes_fenced",
            "Outcomes not written: the task was no longer this node's (fenced by its epoch).")
        self.reclaimed_tasks = counter(
            "ringpool_tasks_reclaimed",
            "Tasks of an earlier life of this node (a restart, a lost session) moved back to "
            "the retry set.", ())
        self.reclaimed_poisoned = counter(
            "ringpool_tasks_reclaimed_poisoned",
            "Tasks of an earlier life of this node sent to the DLQ after too many crash "
            "recoveries.", ())
        self.duration = Histogram("ringpool_task_duration_seconds",
                                  "How long a task ran (middleware included), in seconds.",
                                  ["task"], buckets=DURATION_BUCKETS_S, registry=registry)
        self.queue_wait = Histogram("ringpool_task_queue_wait_seconds",
                                    "From durable accept to the start of its run, in seconds.",
                                    ["task"], buckets=DURATION_BUCKETS_S, registry=registry)
        self.redis = Histogram("ringpool_redis_round_trip_seconds",
                               "Redis script calls of the node (batched), in seconds.",
                               ["op"], buckets=ROUND_TRIP_BUCKETS_S, registry=registry)
        self.zookeeper = Histogram("ringpool_zookeeper_round_trip_seconds",
                                   "ZooKeeper round trips (a periodic probe and ring reads).",
                                   ["op"], buckets=ROUND_TRIP_BUCKETS_S, registry=registry)
        self.config_reloads = counter("ringpool_config_reloads",
                                      "Cluster configs applied from the config znode.", ())
        self.config_errors = counter("ringpool_config_errors",
                                     "Config znode contents refused (the last good config stays).",
                                     ())
        self.config_version = Gauge("ringpool_config_version",
                                    "Version of the config znode in force (-1: none applied).",
                                    registry=registry)
        self.config_version.set(-1)
        self._children: dict[tuple[str, str], Any] = {}
        self._outcome_counters = {TransitionOp.SUCCEED: self.succeeded,
                                  TransitionOp.RETRY: self.retried,
                                  TransitionOp.DEAD: self.dead_lettered}
        # What the Status RPC reports, each summed over its labels.
        self._totals = {"accepted": self.accepted, "duplicate": self.duplicated,
                        "rejected": self.rejected, "succeeded": self.succeeded,
                        "retried": self.retried, "dead": self.dead_lettered,
                        "stale": self.stale_outcomes, "stopped": self.stopped_runs}
        # Accept times by task id, popped by the timing middleware when the run starts.
        self._queued_at: dict[str, float] = {}

    def _child(self, metric: Any, kind: str, name: str) -> Any:
        key = (kind, name)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(name)
        return child

    def totals(self) -> dict[str, int]:
        """The counters the Status RPC reports, each summed over its labels."""
        return {
            name: int(sum(sample.value for family in metric.collect() for sample in family.samples
                          if sample.name.endswith("_total")))
            for name, metric in self._totals.items()
        }

    # -- events, per batch -------------------------------------------------------------

    def answered(self, envelopes: Sequence[pb.TaskEnvelope], acks: Sequence[pb.Ack]) -> None:
        counts: collections.Counter[tuple[str, int]] = collections.Counter(
            (e.name, a.code) for e, a in zip(envelopes, acks, strict=False)
        )
        for (name, code), n in counts.items():
            label = task_label(name)
            if code == pb.ACCEPTED:
                self._child(self.accepted, "accepted", label).inc(n)
            elif code == pb.DUPLICATE:
                self._child(self.duplicated, "duplicated", label).inc(n)
            else:
                self.rejected.labels(label, ACK_REASONS.get(code, "unknown")).inc(n)

    def queued(self, task_id: str) -> None:
        self._queued_at[task_id] = time.monotonic()

    def handed_back(self, task_id: str) -> None:
        self._queued_at.pop(task_id, None)

    def recorded(self, outcomes: Iterable[tuple[str, TransitionOp]]) -> None:
        counts = collections.Counter(outcomes)
        for (name, op), n in counts.items():
            counter = self._outcome_counters.get(op)
            if counter is None:
                continue
            label = task_label(name)
            self._child(counter, op, label).inc(n)
            if op is not TransitionOp.SUCCEED:
                self._child(self.failed, "failed", label).inc(n)

    def stopped(self, name: str, cancelled: bool) -> None:
        self.stopped_runs.labels(task_label(name), "cancelled" if cancelled else "not_ours").inc()

    def fenced(self, name: str) -> None:
        self._child(self.stale_outcomes, "fenced", task_label(name)).inc()

    def reclaimed(self, recovery: Recovery) -> None:
        self.reclaimed_tasks.inc(recovery.recovered)
        self.reclaimed_poisoned.inc(recovery.poisoned)

    def round_trip(self, op: str, seconds: float) -> None:
        self._child(self.redis, "redis", op).observe(seconds)

    def config_applied(self, version: int) -> None:
        self.config_reloads.inc()
        self.config_version.set(version)

    def config_refused(self, version: int) -> None:
        self.config_errors.inc()

    # -- per task, on the thread that runs it ------------------------------------------

    def middleware(self) -> tuple[
        Callable[[Any, Callable[[], Any]], Any], Callable[[Any, Callable[[], Any]], Any]
    ]:
        """Pool middleware (sync, async) timing each run and its wait since accept."""
        queued_at = self._queued_at
        durations: dict[str, Any] = {}
        waits: dict[str, Any] = {}

        def observe(name: str, started: float, queued: float | None) -> None:
            label = task_label(name)
            duration = durations.get(label) or durations.setdefault(
                label, self.duration.labels(label))
            duration.observe(time.monotonic() - started)
            if queued is not None:
                wait = waits.get(label) or waits.setdefault(label, self.queue_wait.labels(label))
                wait.observe(max(0.0, started - queued))

        def timing(ctx: Any, call_next: Callable[[], Any]) -> Any:
            started = time.monotonic()
            queued = queued_at.pop(ctx.task_id, None)
            try:
                return call_next()
            finally:
                observe(ctx.name, started, queued)

        async def timing_async(ctx: Any, call_next: Callable[[], Any]) -> Any:
            started = time.monotonic()
            queued = queued_at.pop(ctx.task_id, None)
            try:
                return await call_next()
            finally:
                observe(ctx.name, started, queued)

        return timing, timing_async


class NodeCollector(Collector):
    """Gauges read when Prometheus scrapes: a ``Node.snapshot()``."""

    def __init__(self, snapshot: Callable[[], NodeSnapshot]) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        node = self.snapshot()
        stats = node.pools
        depth = GaugeMetricFamily("ringpool_queue_depth", "Tasks waiting for a worker, by tier.",
                                  labels=["tier"])
        workers = GaugeMetricFamily("ringpool_workers", "Workers by tier and state.",
                                    labels=["tier", "state"])
        timed_out = CounterMetricFamily("ringpool_pool_tasks_timed_out",
                                        "Tasks stopped at their timeout, by tier.", labels=["tier"])
        for tier in TIERS:
            figures = stats[tier]
            depth.add_metric([tier], figures["queued"])
            timed_out.add_metric([tier], figures["timed_out"])
            for state in ("running", "idle", "abandoned"):
                if state in figures:
                    workers.add_metric([tier, state], figures[state])
        depth.add_metric(["ordered"], stats["ordered_waiting"])
        yield depth
        yield workers
        yield timed_out
        io = stats["io"]
        for name, doc in (("min_workers", "The io pool's lower bound of threads."),
                          ("max_workers", "The io pool's upper bound of threads."),
                          ("target", "The autoscaler's warm floor of io threads.")):
            yield GaugeMetricFamily(f"ringpool_pool_{name}" if name != "target"
                                    else "ringpool_pool_target_workers", doc, value=io[name])
        yield CounterMetricFamily("ringpool_pool_autoscaler_changes",
                                  "Times the autoscaler moved the io target.",
                                  value=stats["autoscaler_changes"])
        yield GaugeMetricFamily("ringpool_tasks_in_flight",
                                "Accepted tasks not yet finished and recorded.",
                                value=node.in_flight)
        yield GaugeMetricFamily("ringpool_ring_version", "Ring version seen by this node.",
                                value=node.ring_version)
        yield GaugeMetricFamily("ringpool_ring_members", "Members of the ring seen by this node.",
                                value=node.ring_members)
        yield GaugeMetricFamily("ringpool_node_draining", "1 while the node drains.",
                                value=int(node.draining))
        yield GaugeMetricFamily(
            "ringpool_zookeeper_connected",
            "1 while the node's ZooKeeper session is connected; 0 while ZooKeeper is "
            "unreachable or without a quorum (the node serves on its last ring).",
            value=int(node.zookeeper_state == "CONNECTED"))
        yield GaugeMetricFamily(
            "ringpool_ring_stale_seconds",
            "Seconds the node has been without ZooKeeper, routing on its last ring "
            "(0 when connected).", value=node.ring_stale_s)
        info = GaugeMetricFamily("ringpool_node_info", "This node's id.", labels=["node_id"])
        info.add_metric([node.node_id], 1)
        yield info


async def probe_zookeeper(zk: KazooClient, path: str, metrics: NodeMetrics,
                          interval_s: float = 15.0) -> None:
    """Time one cheap ZooKeeper read every ``interval_s`` (off the event loop)."""
    child = metrics.zookeeper.labels("probe")

    def probe() -> float:
        started = time.perf_counter()
        zk.exists_async(path).get(timeout=5.0)  # bounded: a thread blocked forever stalls exit
        return time.perf_counter() - started

    while True:
        try:
            child.observe(await asyncio.to_thread(probe))
        except Exception as exc:
            log.debug("ZooKeeper probe failed: %s", exc)
        await asyncio.sleep(interval_s)


def instrument(node: Node, metrics: NodeMetrics) -> None:
    """Read ``node`` at every scrape and time its tasks (and trace them, when a tracer
    provider is set); ``metrics`` are the node's events already."""
    metrics.registry.register(NodeCollector(node.snapshot))
    for middleware in metrics.middleware():
        node.pools.use(middleware)
    if telemetry.configure_from_env("ringpool-node"):
        for middleware in telemetry.execute_middleware():
            node.pools.use(middleware)
