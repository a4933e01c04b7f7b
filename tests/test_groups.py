"""Node groups on a real cluster: ``ringpool-node --group NAME`` and ``@task(group=...)``.

The feature cluster has node-0 and node-1 in the default group and gpu-0 in group
``gpu``; ``tests.tasks_features`` declares ``features.gpu_where`` for group gpu.
"""

from __future__ import annotations

import asyncio
import json

import grpc
import pytest

from ringpool import AsyncCluster, Cluster, InvalidTask, Task, UnknownTask, task
from ringpool.errors import ConfigError
from ringpool.testing.local import LocalCluster
from ringpool.v1 import node_pb2 as pb
from ringpool.v1 import node_pb2_grpc as pb_grpc
from tests import tasks_features as tasks
from tests.helpers import samples, taskctl

DEFAULT_NODES = {"node-0", "node-1"}


def test_a_groups_tasks_run_only_on_its_nodes_and_the_rest_never_there(features_client: Cluster) -> None:
    declared = features_client.dispatch_many([(f"user:{i}", tasks.gpu_where.s()) for i in range(20)])
    by_name = features_client.dispatch_many([(f"user:{i}", Task("features.gpu_where")) for i in range(20)])
    plain = features_client.dispatch_many([(f"user:{i}", tasks.where.s()) for i in range(20)])
    assert {h.result(timeout=30) for h in declared + by_name} == {"gpu-0"}
    ran_on = {h.result(timeout=30) for h in plain}
    assert ran_on <= DEFAULT_NODES and len(ran_on) == 2  # both default nodes share the keys


def test_a_retry_is_fired_to_its_groups_ring(features_client: Cluster) -> None:
    handles = features_client.dispatch_many([(f"retry:{i}", tasks.gpu_retry.s()) for i in range(5)])
    assert [h.result(timeout=60) for h in handles] == [{"node": "gpu-0", "attempt": 2}] * 5


def test_owner_and_route_answer_per_group(features_client: Cluster, features_cluster: LocalCluster) -> None:
    keys = [f"order:{i}" for i in range(50)]
    assert {features_client.owner(k, "gpu") for k in keys} == {"gpu-0"}
    assert {features_client.owner(k) for k in keys} == DEFAULT_NODES
    done = taskctl(features_cluster, "--json", "route", "--group", "gpu", *keys[:3])
    assert done.exit_code == 0, done.output
    assert [r["owner"] for r in json.loads(done.output)["routes"]] == ["gpu-0"] * 3
    done = taskctl(features_cluster, "route", "--group", "no such/group", "k")
    assert done.exit_code == 2 and "invalid group" in done.output


@pytest.mark.parametrize(("dispatched", "error", "message"), [
    (Task("features.gpu_where", group=""), UnknownTask, "group '' serves"),
    (Task("features.where", group="gpu"), UnknownTask, "group 'gpu' serves"),
    (Task("features.where", group="tpu"), UnknownTask, "group 'tpu' serves"),
    (Task("features.where", group="no spaces allowed"), InvalidTask, "invalid group"),
    (Task("features.where", group="x" * 65), InvalidTask, "invalid group"),
])
def test_a_group_that_does_not_serve_the_name_is_refused_typed(
    features_client: Cluster, dispatched: Task, error: type[Exception], message: str,
) -> None:
    with pytest.raises(error, match=message):
        features_client.dispatch("user:1", dispatched)


def test_the_async_client_routes_by_group_too(features_cluster: LocalCluster) -> None:
    async def main() -> tuple[set[str], str]:
        async with AsyncCluster.connect(zk=features_cluster.zk, redis=features_cluster.redis,
                                        cluster=features_cluster.cluster) as cluster:
            handles = await cluster.dispatch_many(
                [(f"user:{i}", tasks.gpu_where.s()) for i in range(10)])
            ran_on = {await h.result(timeout=30) for h in handles}
            try:
                await cluster.dispatch("k", Task("features.gpu_where", group="tpu"))
            except UnknownTask as exc:
                return ran_on, str(exc)
            return ran_on, ""

    ran_on, refusal = asyncio.run(main())
    assert ran_on == {"gpu-0"} and "group 'tpu'" in refusal


def test_status_sums_each_group_and_names_each_nodes_group(features_cluster: LocalCluster) -> None:
    done = taskctl(features_cluster, "--json", "status")
    assert done.exit_code == 0, done.output
    data = json.loads(done.output)
    assert {m["node_id"]: m["group"] for m in data["members"]} == {
        "node-0": "", "node-1": "", "gpu-0": "gpu"}
    assert {name: g["members"] for name, g in data["groups"].items()} == {"": 2, "gpu": 1}
    shares = {m["node_id"]: m["share"] for m in data["members"]}
    assert shares["gpu-0"] == 1.0  # shares are within each group's own ring
    assert abs(shares["node-0"] + shares["node-1"] - 1.0) < 1e-6
    done = taskctl(features_cluster, "status")
    assert done.exit_code == 0 and "gpu: 1/1 serving" in done.output and "default: 2/2 serving" in done.output


def test_each_node_reports_its_group_in_status_and_metrics(features_cluster: LocalCluster) -> None:
    async def group_of(node_id: str) -> str:
        port = features_cluster.node_ports[node_id]
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            reply = await pb_grpc.NodeStub(channel).Status(pb.StatusRequest(), timeout=10)
        return reply.group

    assert asyncio.run(group_of("gpu-0")) == "gpu"
    assert asyncio.run(group_of("node-0")) == ""
    served = samples(features_cluster.metrics_ports["gpu-0"])
    (info,) = [s for s in served if s.name == "ringpool_node_info"]
    assert info.labels == {"node_id": "gpu-0", "group": "gpu"}
    members = {s.labels["group"]: s.value for s in served if s.name == "ringpool_group_members"}
    assert members == {"": 2.0, "gpu": 1.0}


@pytest.mark.parametrize(("group", "says"), [
    ("nosuch", "declares group='nosuch'"),
    ("bad/name", "invalid group"),
])
def test_a_node_refuses_to_start_for_a_group_it_cannot_serve(
    features_cluster: LocalCluster, group: str, says: str,
) -> None:
    node_id = f"refused-{group.replace('/', '-')}"
    process = features_cluster.start_node(node_id, wait=False, extra=["--group", group])
    assert process.wait(60) not in (None, 0)
    assert says in process.log_tail()
    assert node_id not in features_cluster.members()


def test_a_group_name_is_checked_when_the_task_is_declared() -> None:
    for bad in ("has space", "x" * 65, "a/b"):
        with pytest.raises(ConfigError, match="invalid group"):
            task(f"features.bad_group_{len(bad)}", group=bad)(lambda: None)
