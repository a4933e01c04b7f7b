"""Live config: ``taskctl config set`` retunes a running node at once; bad values change nothing.

Observed from outside, through the node's /metrics endpoint.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from ringpool import Cluster, Task, TaskHandle
from ringpool.core.membership import connect_zookeeper
from ringpool.core.naming import Names
from ringpool.errors import ClusterUnavailable
from ringpool.testing.local import LocalCluster
from tests.helpers import eventually, gauges, records, taskctl

APPLY_WITHIN_S = 10.0  # usually well under a second; room for a loaded CI machine


def wait_for(port: int, name: str, expected: float, within_s: float) -> float:
    """Seconds until gauge ``name`` reads ``expected``; fails after ``within_s``."""
    started = time.monotonic()
    eventually(lambda: gauges(port).get(name) == expected, within_s,
               f"{name} to read {expected} after the change")
    return time.monotonic() - started


@pytest.fixture(scope="module")
def local(zookeeper, redis_server) -> Iterator[LocalCluster]:  # type: ignore[no-untyped-def]
    with LocalCluster(nodes=1, coordinators=0, zk=zookeeper.address,
                      redis=redis_server.url) as lc:
        yield lc


def test_config_set_retunes_a_running_node(local: LocalCluster) -> None:
    port = local.metrics_ports["node-0"]
    before = gauges(port)
    assert before["ringpool_pool_max_workers"] == 32
    assert before["ringpool_config_version"] == -1  # no znode yet: the node's flags rule

    result = taskctl(local, "config", "set", "pool.min_workers=1")
    assert result.exit_code == 0, result.output
    wait_for(port, "ringpool_pool_min_workers", 1, APPLY_WITHIN_S)

    result = taskctl(local, "config", "set", "pool.max_workers=2")
    assert result.exit_code == 0, result.output
    # The node sets the pool first and the version last: once the version shows, all does.
    took = wait_for(port, "ringpool_config_version", 1, APPLY_WITHIN_S)
    print(f"pool.max_workers=2 applied on the node after {took:.3f}s")
    after = gauges(port)
    assert after["ringpool_pool_max_workers"] == 2
    assert after["ringpool_config_reloads_total"] == 2
    assert after["ringpool_config_errors_total"] == 0


def test_a_bad_value_changes_nothing(local: LocalCluster) -> None:
    port = local.metrics_ports["node-0"]
    # From the test above; the version is written last, so this sees it applied in full.
    wait_for(port, "ringpool_config_version", 1, APPLY_WITHIN_S)
    version = gauges(port)["ringpool_config_version"]

    # taskctl refuses it before writing...
    for bad in ("pool.max_workers=0", "pool.max_workers=lots", "pool.min_workers=9"):
        result = taskctl(local, "config", "set", bad)
        assert result.exit_code != 0, (bad, result.output)
    # ...and a node refuses what another writer stores behind taskctl's back.
    zk = connect_zookeeper(local.zk)
    try:
        path = Names(local.cluster).config
        for errors, data in ((1, b'{"pool": {"max_workers": 0}}'), (2, b"not json")):
            zk.set(path, data)
            eventually(lambda n=errors: gauges(port)["ringpool_config_errors_total"] >= n,
                       APPLY_WITHIN_S, f"the node to refuse {data!r}")
    finally:
        zk.stop()
        zk.close()
    now = gauges(port)
    assert now["ringpool_pool_max_workers"] == 2
    assert now["ringpool_pool_min_workers"] == 1
    assert now["ringpool_config_version"] == version


def test_durability_and_result_ttl_change_live_and_empty_gives_back_the_flags(
    local: LocalCluster
) -> None:
    zk = connect_zookeeper(local.zk)
    try:  # a good config to change (the test above leaves one the nodes refused)
        zk.set(Names(local.cluster).config, b"{}")
    finally:
        zk.stop()
        zk.close()
    # The session's Redis has no replica: a node told to wait for one refuses to ack.
    with local.connect(accept_timeout_s=3.0) as client:
        assert client.dispatch("a", Task("demo.add", args=(1, 1))).result(timeout=30) == 2
        assert taskctl(local, "config", "set", "accept_durability=replica",
                   "result_ttl_s=1").exit_code == 0
        eventually(lambda: refused(client), APPLY_WITHIN_S + 10,
                   "accepts to be refused for want of a replica")
        assert taskctl(local, "config", "set", "accept_durability=").exit_code == 0
        handle = eventually(lambda: accepted(client), APPLY_WITHIN_S + 10,
                            "accepts to go on with the node's own durability")
        assert handle.result(timeout=30) == 4
        # The result TTL of 1 s applies too: the record is gone soon after.
        eventually(lambda: records(local, [handle.task_id]) == [None], 30,
                   "the finished task's record to expire")


def refused(client: Cluster) -> bool:
    try:
        client.dispatch("b", Task("demo.add", args=(2, 2))).accepted()
    except ClusterUnavailable:
        return True
    return False


def accepted(client: Cluster) -> TaskHandle | None:
    handle = client.dispatch("c", Task("demo.add", args=(2, 2)))
    try:
        handle.accepted()
    except ClusterUnavailable:
        return None
    return handle
