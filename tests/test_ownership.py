"""Who owns a node id's in-flight tasks: one process per node id, fenced recovery, nothing
stranded, and poison counted on crashes only. Real ZooKeeper, Redis and processes."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Iterator
from typing import Any

import pytest
from kazoo.client import KazooClient

from ringpool import Cluster, Task, TaskState
from ringpool.core.envelope import build
from ringpool.core.membership import Membership
from ringpool.core.naming import Names
from ringpool.store.store import AcceptCode, StateStore
from ringpool.testing.local import LocalCluster, RedisServer, ZooKeeperServer
from ringpool.v1 import node_pb2 as pb
from ringpool_coordinator.recovery import Recoverer
from tests.helpers import eventually, records

TASK_MODULES = ["ringpool.demo", "tests.tasks_flaky"]


def accept_behind_the_nodes_back(local: LocalCluster, node_id: str, epoch: int,
                                 envelope: pb.TaskEnvelope) -> None:
    """Put ``envelope`` in flight on ``node_id`` under ``epoch``, as its accept would have."""
    async def accept() -> None:
        store = StateStore.from_url(local.redis, local.cluster)
        try:
            (result,) = await store.accept(node_id, epoch, [envelope])
            assert result.code is AcceptCode.ACCEPTED, result
        finally:
            await store.close()

    asyncio.run(accept())


def state_of(local: LocalCluster, task_id: str) -> tuple[TaskState, int]:
    (record,) = records(local, [task_id])
    assert record is not None
    return record.state, record.recoveries


@pytest.fixture
def one_node(zookeeper: ZooKeeperServer, redis_server: RedisServer,
             request: pytest.FixtureRequest) -> Iterator[LocalCluster]:
    node_args, coordinators = getattr(request, "param", ([], 1))
    with LocalCluster(nodes=1, coordinators=coordinators, tasks=TASK_MODULES,
                      zk=zookeeper.address, redis=redis_server.url,
                      node_args=node_args) as local:
        yield local


def with_cluster(node_args: list[str], coordinators: int = 1) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("one_node", [(node_args, coordinators)], indirect=True)


# -- one process per node id ----------------------------------------------------------------


def test_a_second_process_under_a_live_node_id_is_refused_and_takes_nothing(
    one_node: LocalCluster,
) -> None:
    local = one_node
    with Cluster.connect(zk=local.zk, redis=local.redis, cluster=local.cluster) as client:
        epoch = client.ring.members["node-0"].epoch
        slow = client.dispatch("twin:slow", Task("demo.sleep", args=(3,)))
        twin = local.start_node("node-0", wait=False, name="node-0-twin",
                                extra=["--zk-session-timeout", "2"])  # gives up after 9 s
        assert twin.wait(60) == 2, twin.log_tail()
        assert "node id node-0 is held by a live ZooKeeper session" in twin.log_tail()
        assert "Traceback" not in twin.log_tail()
        # The first process never noticed: same registration, its task untouched.
        assert client.ring.members["node-0"].epoch == epoch
        assert slow.result(timeout=30) == 3
        assert state_of(local, slow.task_id) == (TaskState.SUCCEEDED, 0)
        assert client.dispatch("twin:after", Task("demo.add", args=(1, 1))).result(timeout=30) == 2


@with_cluster(["--zk-session-timeout", "3", "--drain-timeout", "1"])
def test_a_restart_after_a_crash_waits_for_the_old_session_then_takes_over(
    one_node: LocalCluster,
) -> None:
    local = one_node
    with Cluster.connect(zk=local.zk, redis=local.redis, cluster=local.cluster) as client:
        epoch = client.ring.members["node-0"].epoch
        handle = client.dispatch("restart:slow", Task("demo.sleep", args=(30,)))
        eventually(lambda: state_of(local, handle.task_id)[0] == TaskState.RUNNING, 30,
                   "the task to run")
        local.stop_node("node-0", signal.SIGKILL)
        local.start_node("node-0", wait=False)  # at once: the old session is still alive
        eventually(lambda: "waiting up to" in local.nodes["node-0"].log_tail(), 30,
                   "the restart to say it waits for the old session")
        eventually(lambda: "node-0" in client.ring.members
                   and client.ring.members["node-0"].epoch != epoch, 60,
                   "the restart to register")
        # It reclaimed the crashed process's task (one crash recovery) and runs it again.
        eventually(lambda: state_of(local, handle.task_id) == (TaskState.RUNNING, 1), 60,
                   "the reclaimed task to run again")


# -- fenced recovery --------------------------------------------------------------------------


async def test_a_node_back_between_the_check_and_the_recovery_keeps_its_new_tasks(
    zk_client: KazooClient, redis_url: str, cluster_name: str,
) -> None:
    names = Names(cluster_name)
    member = names.member("n1")
    data = json.dumps({"addr": "127.0.0.1:1"}).encode()
    # An earlier registration of n1 that died with a task in flight.
    _, first = zk_client.create(member, data, ephemeral=True, makepath=True, include_data=True)
    zk_client.delete(member)
    store = StateStore.from_url(redis_url, cluster_name)
    membership = Membership(zk_client, cluster_name).start()
    old, new = (build(f"k{i}", Task("demo.add", args=(i, i)), 1) for i in range(2))
    try:
        await store.accept("n1", first.czxid, [old])
        recover = store.recover
        came_back: list[int] = []

        async def comes_back_first(*args: Any, **kwargs: Any) -> Any:
            # n1 registers again and accepts a task after the sweep saw it gone.
            _, stat = zk_client.create(member, data, ephemeral=True, include_data=True)
            await store.accept("n1", stat.czxid, [new])
            came_back.append(stat.czxid)
            return await recover(*args, **kwargs)

        store.recover = comes_back_first  # type: ignore[method-assign]
        await Recoverer(zk_client, store, membership, max_crash_recoveries=3).sweep()
        assert came_back, "the sweep did not see n1 gone"
        assert await store.inflight("n1") == {new.task_id: came_back[0]}
        found = await store.records([old.task_id, new.task_id])
        assert [(r.state, r.recoveries) for r in found if r] == [
            (TaskState.RETRY_SCHEDULED, 1), (TaskState.QUEUED, 0)]
    finally:
        membership.stop()
        await store.close()


# -- nothing stranded, poison on crashes only -------------------------------------------------


def test_a_live_nodes_tasks_of_an_earlier_epoch_are_reclaimed_and_run(
    one_node: LocalCluster,
) -> None:
    """What a reclaim that failed after a lost session leaves: the node itself hands them
    back (the coordinator leaves a live member alone), and they run."""
    local = one_node
    with Cluster.connect(zk=local.zk, redis=local.redis, cluster=local.cluster) as client:
        epoch = client.ring.members["node-0"].epoch
        running = client.dispatch("stale:running", Task("demo.sleep", args=(8,)))
        stale = [build(f"stale:{i}", Task("demo.add", args=(i, 1)), client.ring.version)
                 for i in range(5)]
        for envelope in stale:
            accept_behind_the_nodes_back(local, "node-0", epoch - 1, envelope)
        handles = [client.handle(e.task_id, e.key) for e in stale]
        assert [h.result(timeout=60) for h in handles] == [1, 2, 3, 4, 5]
        assert all(state_of(local, e.task_id)[1] == 0 for e in stale)  # not a crash
        assert running.result(timeout=30) == 8  # the current epoch's task was left alone
        assert state_of(local, running.task_id) == (TaskState.SUCCEEDED, 0)


@with_cluster(["--max-crash-recoveries", "1"], coordinators=0)
def test_lost_sessions_never_make_a_task_poison(one_node: LocalCluster) -> None:
    """Each blip leaves the task in flight under an older epoch; the node reclaims it
    without counting a crash, however often that happens."""
    local = one_node
    with Cluster.connect(zk=local.zk, redis=local.redis, cluster=local.cluster) as client:
        epoch = client.ring.members["node-0"].epoch
        envelope = build("blips", Task("demo.add", args=(20, 22)), client.ring.version)
        for blip in range(3):
            if blip:  # the next blip: the task went out again, and again its owner lost it
                envelope.source = pb.SOURCE_RETRY
            accept_behind_the_nodes_back(local, "node-0", epoch - 1, envelope)
            state = eventually(lambda: (s := state_of(local, envelope.task_id))[0]
                               in (TaskState.RETRY_SCHEDULED, TaskState.FAILED) and s, 30,
                               "the node to reclaim the task")
            assert state == (TaskState.RETRY_SCHEDULED, 0), f"after blip {blip + 1}: {state}"
        local.start_coordinator()
        assert client.handle(envelope.task_id).result(timeout=60) == 42

