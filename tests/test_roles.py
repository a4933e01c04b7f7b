"""Two credentials against real processes: an app token dispatches and reads its results,
nothing more; the operator token (coordinator, taskctl) may retry, replay, read a node's
status and drain it."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import grpc
import pytest
import redis
from click.testing import CliRunner

from ringpool import Cluster, Task, TaskFailed
from ringpool.cli.taskctl import cli as taskctl
from ringpool.testing.local import LocalCluster, RedisServer, ZooKeeperServer
from ringpool.v1 import node_pb2 as pb
from ringpool.v1 import node_pb2_grpc as pb_grpc
from ringpool_node.cli import main as node_main
from tests.helpers import eventually, records
from tests.tasks_flaky import probe_fail_times

APP, OPERATOR = "app-token-for-tests", "operator-token-for-tests"


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


@pytest.fixture(scope="module")
def local(zookeeper: ZooKeeperServer, redis_server: RedisServer) -> Iterator[LocalCluster]:
    with LocalCluster(
        nodes=1, coordinators=1, tasks=["ringpool.demo", "tests.tasks_flaky"],
        zk=zookeeper.address, redis=redis_server.url, cluster=f"roles{uuid.uuid4().hex[:8]}",
        node_args=["--token", APP, "--operator-token", OPERATOR],
        coordinator_args=["--operator-token", OPERATOR],
    ) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def app(local: LocalCluster) -> Iterator[Cluster]:
    with Cluster.connect(zk=local.zk, redis=local.redis, cluster=local.cluster,
                         token=APP) as cluster:
        yield cluster


@pytest.fixture
def stub(local: LocalCluster) -> Iterator[pb_grpc.NodeStub]:
    with grpc.insecure_channel(f"127.0.0.1:{local.node_ports['node-0']}") as channel:
        yield pb_grpc.NodeStub(channel)


def redelivery(record_envelope: pb.TaskEnvelope, source: int) -> pb.TaskEnvelope:
    envelope = pb.TaskEnvelope()
    envelope.CopyFrom(record_envelope)
    envelope.source = source  # type: ignore[assignment]
    return envelope


def refusal(rpc: Callable[..., object], request: object, token: str | None) -> grpc.StatusCode:
    """The status code ``rpc`` fails with when called with ``token`` (None: no header)."""
    with pytest.raises(grpc.RpcError) as caught:
        rpc(request, timeout=10, metadata=() if token is None else bearer(token))
    return caught.value.code()  # type: ignore[no-any-return]


def test_an_app_dispatches_and_the_coordinator_retries_with_the_operator_token(
    app: Cluster,
) -> None:
    assert app.dispatch("roles:retry", probe_fail_times.s("roles", 1)).result(timeout=60) == 2


def test_the_coordinator_fires_an_apps_delayed_task_with_the_operator_token(
    app: Cluster,
) -> None:
    handle = app.dispatch("roles:delay", Task("demo.add", args=(1, 2)), countdown=2)
    assert handle.status() == "SCHEDULED"
    assert handle.result(timeout=60) == 3


def test_an_app_token_cannot_send_retries_replays_or_due_delayed_tasks(
    local: LocalCluster, app: Cluster, stub: pb_grpc.NodeStub, redis_client: redis.Redis,
) -> None:
    handle = app.dispatch("roles:dead", Task("demo.fail", args=("dead on purpose",)))
    with pytest.raises(TaskFailed):
        handle.result(timeout=30)
    (before,) = records(local, [handle.task_id])
    assert before is not None
    for source in (pb.SOURCE_RETRY, pb.SOURCE_REPLAY, pb.SOURCE_SCHEDULED):
        reply = stub.SubmitBatch(
            pb.SubmitRequest(tasks=[redelivery(before.envelope, source)]), timeout=10,
            metadata=bearer(APP))
        (after,) = records(local, [handle.task_id])
        assert after == before  # nothing was written: still dead, never run again
        assert [pb.AckCode.Name(a.code) for a in reply.acks] == ["PERMISSION_DENIED"]
        assert "operator token" in reply.acks[0].message


def test_taskctl_replays_with_the_operator_token_only(local: LocalCluster, app: Cluster) -> None:
    handle = app.dispatch("roles:replay", Task("demo.fail", args=("replay me",)))
    with pytest.raises(TaskFailed):
        handle.result(timeout=30)
    where = ["--zk", local.zk, "--redis", local.redis, "--cluster", local.cluster]
    refused = CliRunner().invoke(taskctl, [*where, "--token", APP, "dlq", "replay", "-y",
                                           handle.task_id])
    assert refused.exit_code == 5, refused.output
    assert "PERMISSION_DENIED" in refused.output
    assert records(local, [handle.task_id])[0].replays == 0  # type: ignore[union-attr]
    replayed = CliRunner().invoke(taskctl, [*where, "--operator-token", OPERATOR, "dlq",
                                            "replay", "-y", handle.task_id])
    assert replayed.exit_code == 0, replayed.output
    eventually(lambda: (r := records(local, [handle.task_id])[0]) is not None
               and r.replays == 1 and r.state == "FAILED", 30, "the replay to run and fail again")


def test_status_and_drain_need_the_operator_token(
    local: LocalCluster, app: Cluster, stub: pb_grpc.NodeStub,
) -> None:
    for token in (None, "guess"):
        assert refusal(stub.Status, pb.StatusRequest(), token) == grpc.StatusCode.UNAUTHENTICATED
    assert refusal(stub.Status, pb.StatusRequest(), APP) == grpc.StatusCode.PERMISSION_DENIED
    assert refusal(stub.Drain, pb.DrainRequest(), APP) == grpc.StatusCode.PERMISSION_DENIED
    # The node did not drain: it still serves the app.
    assert app.dispatch("roles:after", Task("demo.add", args=(2, 2))).result(timeout=30) == 4
    status = stub.Status(pb.StatusRequest(), timeout=10, metadata=bearer(OPERATOR))
    assert status.node_id == "node-0" and not status.draining
    stub.Drain(pb.DrainRequest(timeout_s=5), timeout=10, metadata=bearer(OPERATOR))
    assert local.nodes["node-0"].wait(60) == 0


@pytest.mark.parametrize("tokens", [["--token", APP], ["--operator-token", OPERATOR],
                                    ["--token", APP, "--operator-token", APP]],
                         ids=["app token only", "operator token only", "one token for both"])
def test_a_node_takes_both_tokens_or_neither(tokens: list[str]) -> None:
    result = CliRunner().invoke(node_main, ["--zk", "127.0.0.1:1", "--metrics-port", "0",
                                            *tokens])
    assert result.exit_code == 2
    assert "--operator-token" in result.output and "Traceback" not in result.output
