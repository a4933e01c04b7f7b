"""Every way a task leaves is an outcome on a real node; a result that cannot be announced
still leaves the node's books; a retry or a delayed task nodes keep refusing is not leased
forever."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis

import ringpool.demo  # noqa: F401 - registers demo.add for the in-process execution
from ringpool import Cluster, Task, TaskFailed
from ringpool.core import codec
from ringpool.core.envelope import build
from ringpool.core.protocol import TaskState
from ringpool.errors import ClusterUnavailable, Overloaded, RingpoolError
from ringpool.pool import FixedPolicy, Pools, PoolSettings
from ringpool.store.keys import Keys
from ringpool.store.store import StateStore, Transition, Waiting
from ringpool.task import REGISTRY
from ringpool.testing.local import LocalCluster, RedisServer, ZooKeeperServer
from ringpool.v1 import node_pb2 as pb
from ringpool_coordinator import firing
from ringpool_coordinator.firing import DueFirer
from ringpool_node.execution import Execution
from ringpool_node.streams import ClientStream
from tests.helpers import eventually_async


@pytest.fixture(scope="module")
def client(zookeeper: ZooKeeperServer, redis_server: RedisServer) -> Iterator[Cluster]:
    with LocalCluster(nodes=1, coordinators=1, zk=zookeeper.address, redis=redis_server.url,
                      tasks=["ringpool.demo", "tests.tasks_flaky"]) as local, \
            Cluster.connect(zk=local.zk, redis=local.redis, cluster=local.cluster) as cluster:
        yield cluster


@pytest.mark.parametrize(("task", "error_type"), [
    (Task("probe.exit", args=(3,), ordered=True), "SystemExit"),
    (Task("probe.cancelled", ordered=True), "CancelledError"),
], ids=["SystemExit in an io task", "CancelledError escaping an async task"])
def test_a_task_that_exits_fails_and_its_key_moves_on(
    client: Cluster, task: Task, error_type: str,
) -> None:
    key = f"exit:{error_type}"
    first = client.dispatch(key, task)
    following = client.dispatch(key, Task("demo.add", args=(1, 2), ordered=True))
    with pytest.raises(TaskFailed) as caught:
        first.result(timeout=30)
    assert caught.value.error_type == error_type
    assert following.result(timeout=30) == 3
    # Nothing stays running, and the node serves on.
    assert client.dispatch("after", Task("demo.add", args=(2, 2))).result(timeout=30) == 4


# -- a result that cannot be announced ------------------------------------------------------


async def test_a_failed_announcement_leaves_nothing_pending(
    redis_url: str, cluster_name: str,
) -> None:
    """The submitter's stream closed while the outcome was being written, and announcing the
    result on Redis fails: the record holds it, and the node forgets the task all the same."""
    store = StateStore.from_url(redis_url, cluster_name)
    pools = Pools(PoolSettings(min_workers=1, max_workers=1), policy=FixedPolicy(1))
    execution = Execution("n1", store, pools)
    envelope = build("k", Task("demo.add", args=(1, 2)), 1)
    writing, go_on = asyncio.Event(), asyncio.Event()
    transition = store.transition

    async def held_write(*args: Any) -> list[bool]:
        writing.set()
        await go_on.wait()
        return await transition(*args)

    async def announce_fails(task_id: str, reply_to: str) -> None:
        raise ConnectionError("Redis went away")

    store.transition = held_write  # type: ignore[method-assign]
    store.publish_done = announce_fails  # type: ignore[method-assign]
    try:
        await store.accept("n1", 7, [envelope])
        stream = ClientStream()
        args, kwargs = codec.decode_call(envelope.payload)
        execution.start(envelope, REGISTRY["demo.add"], args, kwargs, 7, stream)
        await asyncio.wait_for(writing.wait(), 10)
        stream.close()  # the submitter went away while the outcome was being written
        go_on.set()
        await eventually_async(lambda: execution.pending == 0, 10, "the task to leave the books")
        assert not execution.active and stream.outstanding == 0
        (record,) = await store.records([envelope.task_id])
        assert record is not None and record.result == b"3"
    finally:
        await pools.release(1.0)
        await store.close()


# -- a retry that nodes keep refusing ---------------------------------------------------------


class Refusing:
    """Stands in for the coordinator's router: it gives up on every re-dispatch with
    ``error``, as the router does once its deadline passed."""

    def __init__(self, error: RingpoolError) -> None:
        self.error = error
        self.sent = 0

    async def send(self, envelopes: list[pb.TaskEnvelope]) -> list[pb.Ack | RingpoolError]:
        self.sent += len(envelopes)
        return [self.error] * len(envelopes)


@pytest.fixture
async def waiting_retry(redis_url: str, cluster_name: str) -> AsyncIterator[tuple[StateStore, str]]:
    store = StateStore.from_url(redis_url, cluster_name)
    envelope = build("k", Task("demo.add", args=(1, 2)), 1)
    await store.accept("n1", 7, [envelope])
    await store.transition("n1", 7, [Transition.retry(envelope.task_id, 1.0, 0.0, "E", "m", "")])
    yield store, envelope.task_id
    await store.close()


async def fire_until(firer: DueFirer, condition: Any, what: str) -> None:
    running = asyncio.create_task(firer.run())
    try:
        await eventually_async(condition, 30, what)
    finally:
        running.cancel()  # as a demotion does: the firer must stop
        stopped, _ = await asyncio.wait({running}, timeout=10)
        assert stopped, "the retry firer did not stop when cancelled"


async def test_a_retry_nodes_keep_refusing_goes_to_the_dlq_after_its_leases(
    waiting_retry: tuple[StateStore, str], monkeypatch: pytest.MonkeyPatch,
    redis_client: redis.Redis, cluster_name: str,
) -> None:
    store, task_id = waiting_retry
    monkeypatch.setattr(firing, "LEASE_S", 0.05)
    monkeypatch.setattr(firing, "MAX_CLAIMS", 3, raising=False)
    sender = Refusing(Overloaded("owners stayed overloaded for 30s"))
    record_key = Keys(cluster_name).task(task_id)
    await fire_until(DueFirer(store, sender),  # type: ignore[arg-type]
                     lambda: redis_client.hget(record_key, "state") == b"FAILED",
                     "the refused retry to reach the DLQ")
    (record,) = await store.records([task_id])
    assert record is not None
    assert (record.dead_reason, record.error_type) == ("undeliverable", "Overloaded")
    assert sender.sent == 3
    assert await store.dlq_times([task_id]) != [None]


async def test_a_retry_waits_for_unreachable_nodes_without_end(
    waiting_retry: tuple[StateStore, str], monkeypatch: pytest.MonkeyPatch,
    redis_client: redis.Redis, cluster_name: str,
) -> None:
    store, task_id = waiting_retry
    monkeypatch.setattr(firing, "LEASE_S", 0.05)
    monkeypatch.setattr(firing, "MAX_CLAIMS", 3, raising=False)
    sender = Refusing(ClusterUnavailable("owners unreachable for 30s"))
    await fire_until(DueFirer(store, sender),  # type: ignore[arg-type]
                     lambda: sender.sent >= 8, "eight leases")
    (record,) = await store.records([task_id])
    assert record is not None and record.state == "RETRY_SCHEDULED"  # it waits: not buried
    assert int(redis_client.hget(Keys(cluster_name).task(task_id), "claims") or 0) >= 8



async def test_a_delayed_task_nodes_keep_refusing_goes_to_the_dlq_after_its_leases(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, redis_client: redis.Redis,
    cluster_name: str,
) -> None:
    store = StateStore.from_url(redis_url, cluster_name)
    try:
        envelope = build("k", Task("demo.add", args=(1, 2)), 1, eta=await store.now() + 0.2)
        (accepted,) = await store.accept("n1", 7, [envelope])
        assert accepted.state is TaskState.SCHEDULED
        monkeypatch.setattr(firing, "LEASE_S", 0.05)
        monkeypatch.setattr(firing, "MAX_CLAIMS", 3, raising=False)
        sender = Refusing(Overloaded("owners stayed overloaded for 30s"))
        record_key = Keys(cluster_name).task(envelope.task_id)
        await fire_until(DueFirer(store, sender, Waiting.SCHEDULED),  # type: ignore[arg-type]
                         lambda: redis_client.hget(record_key, "state") == b"FAILED",
                         "the refused delayed task to reach the DLQ")
        (record,) = await store.records([envelope.task_id])
        assert record is not None and record.dead_reason == "undeliverable"
        assert sender.sent == 3
        assert (await store.scheduled_list()).items == []
    finally:
        await store.close()
