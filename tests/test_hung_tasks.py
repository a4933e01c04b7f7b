"""io tasks that hang past their timeout: their threads are abandoned and replaced, and a
node with too many of them drains, hands back what it holds and exits for a restart."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from ringpool import Cluster, Task, TaskFailed
from ringpool.testing.local import LocalCluster, RedisServer, ZooKeeperServer
from tests.helpers import eventually

EXIT_WEDGED = 3


def hung(seconds: float = 60.0) -> Task:
    """An io task that sleeps far past its 0.5 s timeout and is not retried."""
    return Task("demo.sleep", args=(seconds,), timeout=0.5, max_retries=0)


@pytest.fixture
def client(request: pytest.FixtureRequest, zookeeper: ZooKeeperServer,
           redis_server: RedisServer) -> Iterator[tuple[LocalCluster, Cluster]]:
    nodes, node_args = request.param
    with LocalCluster(nodes=nodes, coordinators=1, zk=zookeeper.address, redis=redis_server.url,
                      node_args=node_args) as local, \
            Cluster.connect(zk=local.zk, redis=local.redis, cluster=local.cluster) as cluster:
        eventually(lambda: len(cluster.ring) == nodes, 30, "every node in the client's ring")
        yield local, cluster


@pytest.mark.parametrize("client", [(1, ["--max-abandoned-threads", "64"])], indirect=True)
def test_forty_hung_io_tasks_do_not_wedge_a_node(client: tuple[LocalCluster, Cluster]) -> None:
    local, cluster = client
    handles = cluster.dispatch_many([(f"hung:{i}", hung()) for i in range(40)])
    for handle in handles:
        with pytest.raises(TaskFailed, match="TaskTimeout"):
            handle.result(timeout=30)
    # 40 threads still sleep; the node runs the next task at once on fresh ones.
    assert cluster.dispatch("after", Task("demo.add", args=(1, 2))).result(timeout=10) == 3
    assert local.nodes["node-0"].alive()


@pytest.mark.parametrize(
    "client", [(2, ["--max-abandoned-threads", "4", "--drain-timeout", "1"])], indirect=True)
def test_a_wedged_node_drains_hands_back_and_exits_for_a_restart(
    client: tuple[LocalCluster, Cluster],
) -> None:
    local, cluster = client
    keys = (f"k{i}" for i in itertools.count())
    on_node_0 = [key for key in itertools.islice(keys, 200) if cluster.owner(key) == "node-0"]
    # A normal task it is running when it wedges: it must not be lost with the node.
    held = cluster.dispatch(on_node_0[0], Task("demo.sleep", args=(4,)))
    eventually(lambda: held.status() == "RUNNING", 30, "the held task to run")
    for key in on_node_0[1:5]:
        cluster.dispatch(key, hung())
    node_0 = local.nodes["node-0"]
    assert node_0.wait(60) == EXIT_WEDGED, node_0.log_tail()
    assert "the io pool is wedged" in node_0.log_tail(100)
    assert "node-0" not in cluster.ring.members
    # What it held was handed back and runs on the node that owns the key now.
    assert held.result(timeout=60) == 4
    assert cluster.dispatch(on_node_0[0], Task("demo.where")).result(timeout=30)["node"] == "node-1"
