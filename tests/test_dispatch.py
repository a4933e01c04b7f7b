"""The dispatch path end to end: real ZooKeeper, Redis, node processes and gRPC.

The module runs on a single Redis and (the tests marked ``redis_cluster``) on a Redis
Cluster of 3 primaries and 3 replicas (``any_redis``).
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections import Counter
from collections.abc import Iterator

import pytest
import redis

from ringpool import (
    AsyncCluster,
    Cluster,
    InvalidKey,
    InvalidTask,
    PayloadTooLarge,
    ResultTimeout,
    Task,
    TaskFailed,
    TaskState,
    UnknownTask,
)
from ringpool.client import async_cluster as client_module
from ringpool.store.keys import Keys
from ringpool.testing.local import LocalCluster, ZooKeeperServer
from tests.helpers import eventually, nodes_ring_ready, redis_client
from tests.tasks_flaky import probe_runs_key

TASK_MODULES = ["ringpool.demo", "tests.tasks_flaky"]


@pytest.fixture(scope="module")
def local(zookeeper: ZooKeeperServer, any_redis: str) -> Iterator[LocalCluster]:
    with LocalCluster(
        nodes=3, coordinators=1, tasks=TASK_MODULES, zk=zookeeper.address, redis=any_redis
    ) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def cluster(local: LocalCluster) -> Iterator[Cluster]:
    with Cluster.connect(zk=local.zk, redis=local.redis, cluster=local.cluster) as client:
        client_ring_ready(client, set(local.nodes))
        yield client


def client_ring_ready(client: Cluster, members: set[str], timeout: float = 30.0) -> None:
    eventually(lambda: set(client.ring.members) == members, timeout,
               f"the client's ring to hold {sorted(members)}")


def cluster_keys(client: redis.Redis, cluster: str) -> set[bytes]:
    return set(client.scan_iter(match=Keys(cluster).pattern, count=1000))


@pytest.mark.redis_cluster
def test_sync_dispatch_returns_the_result(cluster: Cluster) -> None:
    handle = cluster.dispatch("user:42", Task("demo.add", args=(1, 2)))
    assert handle.result(timeout=30) == 3
    assert handle.status() is TaskState.SUCCEEDED


def test_status_is_a_task_state_at_every_step(cluster: Cluster) -> None:
    handle = cluster.dispatch("status", Task("demo.sleep", args=(2,)))
    first = handle.status()
    assert isinstance(first, TaskState) and first in (TaskState.QUEUED, TaskState.RUNNING)
    eventually(lambda: handle.status() is TaskState.RUNNING, 30, "the task to show RUNNING")
    handle.result(timeout=30)
    assert handle.status() is TaskState.SUCCEEDED and handle.status().terminal
    assert cluster.handle("0" * 32).status() is TaskState.UNKNOWN  # no such task


def test_async_status_is_a_task_state(local: LocalCluster) -> None:
    async def run() -> tuple[TaskState, TaskState]:
        async with AsyncCluster.connect(
            zk=local.zk, redis=local.redis, cluster=local.cluster
        ) as client:
            handle = await client.dispatch("user:2", Task("demo.add", args=(2, 2)))
            await handle.result(timeout=30)
            return await handle.status(), await client.handle("f" * 32).status()

    assert asyncio.run(run()) == (TaskState.SUCCEEDED, TaskState.UNKNOWN)


def test_signature_shortcut_and_kwargs(cluster: Cluster) -> None:
    from ringpool.demo import add

    assert cluster.dispatch("user:43", add.s(20, b=22)).result(timeout=30) == 42


@pytest.mark.redis_cluster
def test_async_dispatch_returns_the_result(local: LocalCluster) -> None:
    async def run() -> list[int]:
        async with AsyncCluster.connect(
            zk=local.zk, redis=local.redis, cluster=local.cluster
        ) as client:
            one = await client.dispatch("user:1", Task("demo.async_add", args=(2, 3)))
            many = await client.dispatch_many(
                [(f"user:{i}", Task("demo.add", args=(i, i))) for i in range(50)]
            )
            return [await one.result(timeout=30)] + [await h.result(timeout=30) for h in many]

    results = asyncio.run(run())
    assert results == [5] + [2 * i for i in range(50)]


def test_close_ends_even_when_a_part_never_finishes_closing(
    local: LocalCluster, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(client_module, "CLOSE_STEP_S", 0.5)

    async def never_closes() -> None:
        await asyncio.Event().wait()

    async def run() -> int:
        client = await AsyncCluster.connect(zk=local.zk, redis=local.redis, cluster=local.cluster)
        result = await (await client.dispatch("user:7", Task("demo.add", args=(3, 4)))).result(30)
        client._results.close = never_closes  # type: ignore[method-assign]
        await asyncio.wait_for(client.close(), 20)
        return result

    assert asyncio.run(run()) == 7
    assert "closing the result listener took over 0.5s" in caplog.text


@pytest.mark.redis_cluster
def test_dispatch_many_returns_every_result_in_order(cluster: Cluster) -> None:
    handles = cluster.dispatch_many([(f"k{i % 97}", Task("demo.add", args=(i, 1))) for i in range(2000)])
    assert len({h.task_id for h in handles}) == 2000
    assert [h.result(timeout=60) for h in handles] == [i + 1 for i in range(2000)]


def test_every_task_of_a_key_runs_on_its_owner(cluster: Cluster, local: LocalCluster) -> None:
    keys = [f"account:{i}" for i in range(30)]
    handles = cluster.dispatch_many(
        [(key, Task("probe.run", args=("affinity",))) for key in keys for _ in range(10)]
    )
    ran_on: dict[str, set[str]] = {}
    for handle in handles:
        result = handle.result(timeout=60)
        ran_on.setdefault(result["key"], set()).add(result["node"])
    assert set(ran_on) == set(keys)
    for key, nodes in ran_on.items():
        assert nodes == {cluster.owner(key)}, key
    assert len({cluster.owner(k) for k in keys}) == 3  # the keys spread over every node


@pytest.mark.redis_cluster
def test_same_idempotency_key_returns_the_first_task(
    cluster: Cluster, local: LocalCluster
) -> None:
    task = Task("probe.run", args=("idem",), idempotency_key="order-17")
    first = cluster.dispatch("order:17", task)
    first_result = first.result(timeout=30)
    second = cluster.dispatch("order:17", task)
    assert second.task_id == first.task_id
    assert second.result(timeout=30) == first_result
    runs = redis_client(local.redis).hgetall(probe_runs_key("idem"))
    assert runs == {first.task_id.encode(): b"1"}


def test_idempotency_key_is_scoped_by_task_name(cluster: Cluster) -> None:
    a = cluster.dispatch("k", Task("demo.add", args=(1, 1), idempotency_key="same"))
    b = cluster.dispatch("k", Task("probe.run", args=("scope",), idempotency_key="same"))
    assert a.task_id != b.task_id
    assert a.result(timeout=30) == 2


@pytest.mark.redis_cluster
def test_failed_task_raises_task_failed_with_the_remote_error(cluster: Cluster) -> None:
    handle = cluster.dispatch("k", Task("demo.fail", args=("kaput",)))
    with pytest.raises(TaskFailed) as caught:
        handle.result(timeout=30)
    assert caught.value.error_type == "ValueError"
    assert caught.value.message == "kaput"
    assert "raise ValueError(message)" in caught.value.traceback
    assert handle.status() is TaskState.FAILED


def test_result_wait_times_out_with_a_typed_error(cluster: Cluster) -> None:
    handle = cluster.dispatch("slow", Task("demo.sleep", args=(3,)))
    with pytest.raises(ResultTimeout):
        handle.result(timeout=0.2)
    with pytest.raises(TimeoutError):  # also what the contract promises
        handle.result(timeout=0.2)
    assert handle.result(timeout=30) == 3


@pytest.mark.redis_cluster
@pytest.mark.parametrize(
    ("key", "task", "error"),
    [
        ("k", Task("no.such.task"), UnknownTask),
        ("k", Task("demo.add", args=(object(), 1)), InvalidTask),
        ("k", Task("demo.add", args=("x" * (1024 * 1024 + 1), 1)), PayloadTooLarge),
        ("", Task("demo.add", args=(1, 1)), InvalidKey),
        ("k" * 2000, Task("demo.add", args=(1, 1)), InvalidKey),
        ("k", Task("demo.add", args=(1, 1), timeout=-1), InvalidTask),
        ("k", Task("demo.add", args=(float("nan"), 1)), InvalidTask),
    ],
    ids=["unknown-task", "non-json", "oversized", "empty-key", "long-key", "bad-timeout", "nan"],
)
def test_bad_input_gets_its_typed_error_and_writes_nothing(
    cluster: Cluster, local: LocalCluster, key: str, task: Task, error: type[Exception]
) -> None:
    client = redis_client(local.redis)
    before = cluster_keys(client, local.cluster)
    with pytest.raises(error):  # by dispatch() itself: nodes publish the names they serve
        cluster.dispatch(key, task)
    with pytest.raises(error):
        cluster.dispatch_many([("fine", Task("demo.add", args=(1, 1))), (key, task)])
    assert cluster_keys(client, local.cluster) == before
    assert cluster.dispatch("k", Task("demo.add", args=(2, 2))).result(timeout=30) == 4


def test_stale_client_ring_still_reaches_the_right_owner(local: LocalCluster) -> None:
    with Cluster.connect(zk=local.zk, redis=local.redis, cluster=local.cluster) as stale:
        client_ring_ready(stale, set(local.nodes))
        membership = stale._async.membership
        assert membership is not None
        membership.stop()  # the client no longer hears about ring changes by itself
        old_version = stale.ring.version
        local.start_node("node-3")
        try:
            with Cluster.connect(zk=local.zk, redis=local.redis, cluster=local.cluster) as fresh:
                client_ring_ready(fresh, {*local.nodes})
                # A node that has not handled the ZooKeeper watch yet would still accept
                # keys node-3 now owns: the stale client must meet only up-to-date nodes.
                nodes_ring_ready(local, fresh.ring.version)
                keys = [f"stale:{i}" for i in range(300)]
                moved = [k for k in keys if fresh.owner(k) == "node-3"]
                assert moved, "the new member should own some keys"
                handles = stale.dispatch_many([(k, Task("probe.run", args=("stale",))) for k in keys])
                for key, handle in zip(keys, handles, strict=True):
                    assert handle.result(timeout=60)["node"] == fresh.owner(key)
                assert stale.ring.version > old_version  # learned from WRONG_OWNER
        finally:
            assert local.stop_node("node-3") == 0
            del local.nodes["node-3"]


@pytest.mark.redis_cluster
def test_sigterm_under_load_loses_nothing_and_runs_nothing_twice(local: LocalCluster) -> None:
    tag = "drain"
    with Cluster.connect(zk=local.zk, redis=local.redis, cluster=local.cluster) as client:
        local.start_node("node-drain")
        client_ring_ready(client, {*local.nodes})
        handles: list = []
        errors: list[BaseException] = []
        stop = threading.Event()

        def produce() -> None:
            i = 0
            try:
                while not stop.is_set() and i < 3000:
                    batch = [(f"load:{j}", Task("probe.run", args=(tag, 0.005)))
                             for j in range(i, i + 100)]
                    sent = client.dispatch_many(batch)
                    for handle in sent:  # at the pace the cluster accepts them
                        handle.accepted()
                    handles.extend(sent)
                    i += 100
            except BaseException as exc:  # a drain must never surface to the caller
                errors.append(exc)

        producer = threading.Thread(target=produce)
        producer.start()
        eventually(lambda: len(handles) >= 600, 60, "600 accepted tasks", interval=0.01)
        assert local.stop_node("node-drain", sig=signal.SIGTERM, timeout=60) == 0
        producer.join(timeout=120)
        stop.set()
        del local.nodes["node-drain"]
        assert errors == []
        results = [h.result(timeout=120) for h in handles]
        assert len(results) == len(handles) >= 600
        runs = redis_client(local.redis).hgetall(probe_runs_key(tag))
        counts = Counter(int(v) for v in runs.values())
        assert len(runs) == len(handles)  # every accepted task ran
        assert counts == {1: len(handles)}, counts  # and none ran twice
        assert any(r["node"] == "node-drain" for r in results)
