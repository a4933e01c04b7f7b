"""Prometheus metrics: every endpoint of a real local cluster follows the naming rules,
the numbers move as a run with successes, failures, retries and DLQ entries says they
should, and every dashboard query names a metric we export."""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from ringpool import Cluster, Task, TaskFailed, demo
from ringpool.core import envelope
from ringpool.errors import UnknownTask
from ringpool.testing.local import LocalCluster
from ringpool.v1 import node_pb2 as pb
from ringpool.v1 import node_pb2_grpc as pb_grpc
from tests.helpers import eventually

DASHBOARD = Path(__file__).resolve().parents[1] / "k8s" / "dashboards" / "ringpool.json"
DEFAULT_PREFIXES = ("python_", "process_")  # prometheus_client's own collectors
FORBIDDEN_LABELS = {"key", "task_id", "id", "idempotency_key"}
BOUNDED_LABELS = {"task", "reason", "state", "tier", "op", "node_id"}
NON_BASE_UNITS = re.compile(r"_(ms|milliseconds|microseconds|minutes|hours|kb|mb|kilobytes|megabytes)(_|$)")
SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created")


def scrape(port: int) -> dict[str, Metric]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def value(families: dict[str, Metric], sample_name: str, **labels: str) -> float:
    """Sum of the samples named ``sample_name`` whose labels include ``labels`` (0 if none)."""
    family_name = sample_name
    for suffix in SUFFIXES:
        if sample_name.endswith(suffix) and sample_name.removesuffix(suffix) in families:
            family_name = sample_name.removesuffix(suffix)
            break
    family = families.get(family_name)
    if family is None:
        return 0.0
    return sum(s.value for s in family.samples if s.name == sample_name
               and all(s.labels.get(k) == v for k, v in labels.items()))


def total(scrapes: list[dict[str, Metric]], sample_name: str, **labels: str) -> float:
    return sum(value(families, sample_name, **labels) for families in scrapes)


@dataclass
class Run:
    before: list[dict[str, Metric]]
    nodes: list[dict[str, Metric]]
    coordinator: dict[str, Metric]
    client: dict[str, Metric]
    statuses: list[pb.StatusResponse]  # each node's Status reply, taken with ``nodes``


@pytest.fixture(scope="module")
def run(zookeeper, redis_server) -> Iterator[Run]:  # type: ignore[no-untyped-def]
    with LocalCluster(nodes=2, coordinators=1, zk=zookeeper.address, redis=redis_server.url,
                      tasks=["ringpool.demo"]) as lc:
        node_ports = [lc.metrics_ports[n] for n in sorted(lc.nodes)]
        coordinator_port = lc.metrics_ports["coordinator-0"]
        eventually(lambda: value(scrape(coordinator_port), "ringpool_coordinator_leader") == 1,
                   30, "a leading coordinator")
        before = [scrape(port) for port in node_ports]
        registry = CollectorRegistry()
        with Cluster.connect(zk=lc.zk, redis=lc.redis, cluster=lc.cluster,
                             metrics_registry=registry) as cluster:
            handles = cluster.dispatch_many(
                [(f"user:{i}", demo.add.s(i, 1)) for i in range(40)])
            assert [h.result(timeout=20) for h in handles] == [i + 1 for i in range(40)]
            for i in range(5):
                assert cluster.dispatch(f"k{i}", demo.add.s(i, i)).result(timeout=20) == 2 * i
            first = cluster.dispatch("dup", Task("demo.add", args=(1, 1), idempotency_key="once"))
            again = cluster.dispatch("dup", Task("demo.add", args=(1, 1), idempotency_key="once"))
            assert again.task_id == first.task_id
            with pytest.raises(TaskFailed):
                cluster.dispatch("p", demo.permanent.s()).result(timeout=20)
            # One failed attempt, a retry fired by the coordinator, a second failure: the DLQ.
            with pytest.raises(TaskFailed):
                cluster.dispatch("f", Task("demo.fail", max_retries=1)).result(timeout=30)
            with pytest.raises(UnknownTask):
                cluster.dispatch("u", Task("no.such.task"))
            # Our client refuses an unknown name itself; a client that is not ours meets
            # the node's own check.
            stray = envelope.build("u", Task("no.such.task"), cluster.ring.version)
            with grpc.insecure_channel(cluster.ring.members[cluster.owner("u")].addr) as ch:
                answer = pb_grpc.NodeStub(ch).SubmitBatch(pb.SubmitRequest(tasks=[stray]),
                                                          timeout=10)
            assert [ack.code for ack in answer.acks] == [pb.UNKNOWN_TASK]
        client = {f.name: f for f in text_string_to_metric_families(
            generate_latest(registry).decode())}
        coordinator = scrape(coordinator_port)
        eventually(lambda: value(scrape(coordinator_port), "ringpool_dlq_size") == 2, 10,
                   "two DLQ entries")
        coordinator = scrape(coordinator_port)
        nodes, statuses = [], []
        for node_id in sorted(lc.nodes):
            nodes.append(scrape(lc.metrics_ports[node_id]))
            with grpc.insecure_channel(f"127.0.0.1:{lc.node_ports[node_id]}") as channel:
                statuses.append(pb_grpc.NodeStub(channel).Status(pb.StatusRequest(), timeout=5))
        yield Run(before, nodes, coordinator, client, statuses)


def check_rules(families: dict[str, Metric]) -> None:
    for name, family in families.items():
        if name.startswith(DEFAULT_PREFIXES):
            continue
        assert name.startswith("ringpool_"), name
        assert not NON_BASE_UNITS.search(name), f"{name}: use base units (seconds, bytes)"
        assert family.type in ("counter", "gauge", "histogram"), (name, family.type)
        if family.type == "histogram":
            assert name.endswith(("_seconds", "_bytes")), f"histogram {name} needs a unit"
        for sample in family.samples:
            if family.type == "counter":
                assert sample.name.endswith(("_total", "_created")), sample.name
            else:
                assert not sample.name.endswith("_total"), f"{sample.name}: _total on a {family.type}"
            assert not set(sample.labels) & FORBIDDEN_LABELS, sample
            assert set(sample.labels) - {"le"} <= BOUNDED_LABELS, sample
            task = sample.labels.get("task")
            if task is not None:
                assert task in {*demo_tasks(), "unregistered"}, sample


def demo_tasks() -> set[str]:
    from ringpool.task import REGISTRY
    return {name for name in REGISTRY if name.startswith("demo.")}


def test_every_endpoint_follows_the_naming_rules(run: Run) -> None:
    for families in [*run.nodes, run.coordinator, run.client]:
        check_rules(families)


def test_node_counters_move_across_the_run(run: Run) -> None:
    nodes, before = run.nodes, run.before
    assert total(before, "ringpool_tasks_accepted_total") == 0
    assert total(nodes, "ringpool_tasks_accepted_total", task="demo.add") == 46
    assert total(nodes, "ringpool_tasks_duplicated_total", task="demo.add") == 1
    assert total(nodes, "ringpool_tasks_succeeded_total", task="demo.add") == 46
    assert total(nodes, "ringpool_tasks_rejected_total", task="unregistered",
                 reason="unknown_task") == 1
    assert total(nodes, "ringpool_tasks_dead_lettered_total", task="demo.permanent") == 1
    assert total(nodes, "ringpool_tasks_failed_total", task="demo.permanent") == 1
    assert total(nodes, "ringpool_tasks_retried_total", task="demo.fail") == 1
    assert total(nodes, "ringpool_tasks_failed_total", task="demo.fail") == 2
    assert total(nodes, "ringpool_tasks_dead_lettered_total", task="demo.fail") == 1
    # The retry was accepted again: two accepts for demo.fail.
    assert total(nodes, "ringpool_tasks_accepted_total", task="demo.fail") == 2
    assert total(nodes, "ringpool_task_duration_seconds_count", task="demo.add") == 46
    assert total(nodes, "ringpool_task_queue_wait_seconds_count", task="demo.add") == 46
    assert total(nodes, "ringpool_task_duration_seconds_sum") > 0
    assert total(nodes, "ringpool_redis_round_trip_seconds_count", op="accept") >= 2
    assert total(nodes, "ringpool_redis_round_trip_seconds_count", op="transition") >= 2
    assert total(nodes, "ringpool_zookeeper_round_trip_seconds_count", op="probe") >= 2
    for families in nodes:
        assert value(families, "ringpool_ring_members") == 2
        assert value(families, "ringpool_ring_version") >= 2
        assert value(families, "ringpool_tasks_in_flight") == 0
        assert value(families, "ringpool_queue_depth", tier="io") == 0
        assert value(families, "ringpool_workers", tier="io", state="idle") >= 1
        assert value(families, "ringpool_pool_max_workers") == 32
        assert families["ringpool_tasks_reclaimed"].type == "counter"
        assert families["ringpool_tasks_reclaimed_poisoned"].type == "counter"
        assert families["ringpool_outcomes_fenced"].type == "counter"


def test_status_reports_the_same_counts_as_prometheus(run: Run) -> None:
    for families, status in zip(run.nodes, run.statuses, strict=True):
        counters = dict(status.counters)
        for key, metric in (("accepted", "ringpool_tasks_accepted_total"),
                            ("duplicate", "ringpool_tasks_duplicated_total"),
                            ("rejected", "ringpool_tasks_rejected_total"),
                            ("succeeded", "ringpool_tasks_succeeded_total"),
                            ("retried", "ringpool_tasks_retried_total"),
                            ("dead", "ringpool_tasks_dead_lettered_total"),
                            ("stale", "ringpool_outcomes_fenced_total")):
            assert counters[key] == value(families, metric), key
    assert sum(s.counters["succeeded"] for s in run.statuses) == 46


def test_node_and_coordinator_never_share_a_name_with_another_meaning(run: Run) -> None:
    coordinator = {name: family.documentation for name, family in run.coordinator.items()}
    for families in run.nodes:
        for name, family in families.items():
            if name in coordinator and not name.startswith(DEFAULT_PREFIXES):
                assert family.documentation == coordinator[name], name


def test_coordinator_and_client_metrics(run: Run) -> None:
    c = run.coordinator
    assert value(c, "ringpool_coordinator_leader") == 1
    assert value(c, "ringpool_dlq_size") == 2
    assert value(c, "ringpool_retry_set_size") == 0
    assert value(c, "ringpool_retries_fired_total") == 1
    assert value(c, "ringpool_retry_lag_seconds_count") >= 1
    assert c["ringpool_tasks_recovered"].type == "counter"
    assert c["ringpool_tasks_poisoned"].type == "counter"
    client = run.client
    assert value(client, "ringpool_client_dispatch_seconds_count", op="dispatch_many") == 1
    assert value(client, "ringpool_client_dispatch_seconds_count", op="dispatch") >= 9
    assert client["ringpool_client_resends"].type == "counter"


def dashboard_metrics() -> set[str]:
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", []) if "expr" in t]
    assert exprs
    return {m for expr in exprs for m in re.findall(r"\bringpool_[a-z0-9_]+", expr)}


def test_every_dashboard_query_names_an_exported_metric(run: Run) -> None:
    exported: set[str] = set()
    for families in [*run.nodes, run.coordinator, run.client]:
        for family in families.values():
            exported |= {s.name for s in family.samples} | {family.name}
    missing = dashboard_metrics() - exported
    assert not missing, f"dashboard queries metrics nobody exports: {sorted(missing)}"
