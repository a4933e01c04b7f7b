"""Per-key order across a change of owner: a key's ``ordered=True`` tasks never run on two
nodes at once when a node joins the ring, when the key's owner drains, or after it
crashed (its lease lapses). Real ZooKeeper, Redis, node processes and a coordinator."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from itertools import count, pairwise
from pathlib import Path

import pytest

from ringpool import TaskState
from ringpool.core.ring import Member, Ring
from ringpool.store.keys import Keys
from ringpool.testing.local import LocalCluster, RedisServer, ZooKeeperServer
from tests.helpers import eventually, metric_value, records, redis_client
from tests.tasks_ordered import runs, step

SESSION_S = 3  # the nodes' ZooKeeper session timeout: also their leases' TTL


def key_owned_by(owner: str, members: list[str]) -> str:
    """A routing key that ``owner`` owns on a ring of ``members``."""
    ring = Ring({m: Member(m, "") for m in members})
    return next(key for key in (f"order-{n}" for n in count()) if ring.owner(key) == owner)


def waits_on(local: LocalCluster, node_id: str) -> float:
    """Ordered tasks waiting on ``node_id`` for their key's lease or turn (its metrics)."""
    return metric_value(local, node_id, "ringpool_queue_depth", tier="ordered")


def assert_one_after_another(log: Path, task_ids: list[str]) -> None:
    """Each task ran after the one before it had ended (by their logged wall times)."""
    ran = runs(str(log))
    for earlier, later in pairwise(task_ids):
        assert ran[later]["start"] >= ran[earlier]["end"], (
            f"{later} on {ran[later]['node']} started {ran[earlier]['end'] - ran[later]['start']:.2f}s "
            f"before {earlier} on {ran[earlier]['node']} ended")


@pytest.fixture
def cluster(zookeeper: ZooKeeperServer, redis_server: RedisServer,
            request: pytest.FixtureRequest) -> Iterator[LocalCluster]:
    with LocalCluster(nodes=request.param, coordinators=1, tasks=["tests.tasks_ordered"],
                      zk=zookeeper.address, redis=redis_server.url,
                      node_args=["--zk-session-timeout", str(SESSION_S),
                                 "--drain-timeout", "60"]) as local:
        yield local


def nodes(count: int) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("cluster", [count], indirect=True)


@nodes(1)
def test_a_node_joining_the_ring_starts_a_key_after_its_previous_owner_is_done(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    local, log, gate = cluster, tmp_path / "runs.log", tmp_path / "gate"
    key = key_owned_by("node-1", ["node-0", "node-1"])
    gate.touch()
    with local.connect() as client:
        first = client.dispatch(key, step.s(str(log), str(gate)))
        queued = client.dispatch(key, step.s(str(log)))  # behind it, on node-0
        eventually(lambda: first.task_id in runs(str(log)), what="the first task to start")
        local.start_node("node-1")
        eventually(lambda: client.owner(key) == "node-1", what="the key to move to node-1")
        later = client.dispatch(key, step.s(str(log)))
        later.accepted(timeout=30)
        eventually(lambda: waits_on(local, "node-1") == 1 or later.task_id in runs(str(log)),
                   what="the later task to wait on node-1")
        assert later.task_id not in runs(str(log)), "started while node-0 still ran the key"
        assert later.status() is TaskState.QUEUED
        gate.unlink()
        assert [h.result(timeout=60) for h in (first, queued, later)] == ["done"] * 3
    ran = runs(str(log))
    assert [ran[h.task_id]["node"] for h in (first, queued, later)] == ["node-0", "node-0",
                                                                         "node-1"]
    assert_one_after_another(log, [first.task_id, queued.task_id, later.task_id])


@nodes(2)
def test_a_draining_owner_finishes_its_queued_tasks_of_a_key_before_the_new_owner_starts_it(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    local, log, gate = cluster, tmp_path / "runs.log", tmp_path / "gate"
    key = key_owned_by("node-0", ["node-0", "node-1"])
    gate.touch()
    with local.connect() as client:
        first = client.dispatch(key, step.s(str(log), str(gate)))
        queued = [client.dispatch(key, step.s(str(log))) for _ in range(2)]
        for handle in queued:
            handle.accepted(timeout=30)
        eventually(lambda: first.task_id in runs(str(log)), what="the first task to start")
        local.nodes["node-0"].send_signal(signal.SIGTERM)
        eventually(lambda: client.owner(key) == "node-1", what="node-0 to leave the ring")
        later = client.dispatch(key, step.s(str(log)))
        later.accepted(timeout=30)
        eventually(lambda: waits_on(local, "node-1") == 1 or later.task_id in runs(str(log)),
                   what="the later task to wait on node-1")
        assert later.task_id not in runs(str(log)), "started while draining node-0 ran the key"
        gate.unlink()
        handles = [first, *queued, later]
        assert [h.result(timeout=60) for h in handles] == ["done"] * 4
        assert local.nodes["node-0"].wait(60) == 0
    ran = runs(str(log))
    assert [ran[h.task_id]["node"] for h in handles] == ["node-0"] * 3 + ["node-1"]
    assert_one_after_another(log, [h.task_id for h in handles])
    # Every lease went with the tasks it covered.
    assert not redis_client(local.redis).exists(Keys(local.cluster).order_lease(key))


@nodes(2)
def test_a_crashed_holders_lease_lapses_and_the_new_owner_runs_the_key(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    local, log, gate = cluster, tmp_path / "runs.log", tmp_path / "gate"
    key = key_owned_by("node-0", ["node-0", "node-1"])
    lease = Keys(local.cluster).order_lease(key)
    redis = redis_client(local.redis)
    gate.touch()
    with local.connect() as client:
        first = client.dispatch(key, step.s(str(log), str(gate)))
        eventually(lambda: first.task_id in runs(str(log)), what="the first task to start")
        assert redis.get(lease).decode().startswith("node-0:")
        local.nodes["node-0"].send_signal(signal.SIGKILL)
        killed_at = time.time()
        gate.unlink()
        eventually(lambda: client.owner(key) == "node-1", timeout=60,
                   what="node-0's session to expire")
        later = client.dispatch(key, step.s(str(log)))
        # The lease lapses by its TTL (the session timeout): no wait past that and a recovery.
        assert later.result(timeout=60) == "done"
        eventually(lambda: records(local, [first.task_id])[0].state is TaskState.SUCCEEDED,
                   timeout=60, what="the crashed run's task to run again and succeed")
    ran = runs(str(log))
    assert ran[later.task_id]["node"] == "node-1"
    assert ran[later.task_id]["start"] >= killed_at
    eventually(lambda: not redis.exists(lease), what="node-1 to release the lease")
