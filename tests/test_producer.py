"""dispatch() as a pipelining producer, end to end: real ZooKeeper, Redis and nodes.

A task is checked on the caller's thread and queued; ``accepted()``, ``flush()``
and leaving ``with`` wait for durable accepts; refusals land on the handle and in
``on_refused``; outstanding tasks are bounded; a key's ordered tasks keep their
order through batches in flight and re-routes.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from ringpool import AsyncCluster, Cluster, ClusterUnavailable, Task, UnknownTask
from ringpool.client import links
from ringpool.core.membership import Membership
from ringpool.errors import RingpoolError
from ringpool.testing.local import LocalCluster, ManagedProcess, RedisServer, ZooKeeperServer
from tests.helpers import eventually, nodes_ring_ready
from tests.tasks_flaky import probe_log_key, probe_runs_key

TASK_MODULES = ["ringpool.demo", "tests.tasks_flaky"]


@pytest.fixture(scope="module")
def local(zookeeper: ZooKeeperServer, redis_server: RedisServer) -> Iterator[LocalCluster]:
    with LocalCluster(nodes=2, coordinators=0, tasks=TASK_MODULES, zk=zookeeper.address,
                      redis=redis_server.url) as cluster:
        yield cluster


def connect(local: LocalCluster, **options: object) -> Cluster:
    cluster = Cluster.connect(zk=local.zk, redis=local.redis, cluster=local.cluster, **options)
    eventually(lambda: set(cluster.ring.members) >= set(local.nodes), 30, "the client's ring")
    return cluster


def runs(local: LocalCluster, tag: str) -> dict[str, int]:
    raw = redis.Redis.from_url(local.redis).hgetall(probe_runs_key(tag))
    return {task_id.decode(): int(count) for task_id, count in raw.items()}


def started_order(local: LocalCluster, tag: str) -> list[str]:
    """Task ids of ``tag`` in the order they started, on whichever node."""
    log = redis.Redis.from_url(local.redis).lrange(probe_log_key(tag), 0, -1)
    return [entry.decode().split(" ")[1] for entry in log]


def test_dispatch_returns_before_the_accept_and_the_with_block_flushes(
    local: LocalCluster,
) -> None:
    with connect(local) as cluster:
        handles = [cluster.dispatch(f"pipe:{i}", Task("probe.run", args=("pipe",)))
                   for i in range(500)]
        handles += cluster.dispatch_many(
            [(f"pipe:{i}", Task("probe.run", args=("pipe",))) for i in range(500)])
        first = handles[0].accepted(timeout=30)
        assert first == handles[0].task_id
    # Leaving the block flushed: every task is accepted (none refused) and runs once.
    assert all(h._ticket.done and h.accepted() == h.task_id for h in handles)
    eventually(lambda: len(runs(local, "pipe")) == 1000, 60, "every task to run")
    assert set(runs(local, "pipe").values()) == {1}


def test_threads_dispatching_at_once_each_get_every_task_through(local: LocalCluster) -> None:
    tag = "threads"
    with connect(local, max_outstanding=300) as cluster:  # small: takers and givers race
        def produce(worker: int) -> list[str]:
            return [cluster.dispatch(f"t:{worker}:{i}", Task("probe.run", args=(tag,))).task_id
                    for i in range(500)]

        with ThreadPoolExecutor(4) as pool:
            task_ids = [t for ids in pool.map(produce, range(4)) for t in ids]
        cluster.flush(timeout=60)
        assert cluster._async.router.window.tasks == 0
    eventually(lambda: len(runs(local, tag)) == 2000, 60, "every task to run")
    assert set(runs(local, tag)) == set(task_ids) and set(runs(local, tag).values()) == {1}


def test_async_cluster_pipelines_the_same_way(local: LocalCluster) -> None:
    tag = "async-pipe"

    async def run() -> list[str]:
        async with AsyncCluster.connect(zk=local.zk, redis=local.redis,
                                        cluster=local.cluster) as client:
            handles = [await client.dispatch(f"a:{i}", Task("probe.run", args=(tag,)))
                       for i in range(200)]
            handles += await client.dispatch_many(
                [(f"a:{i}", Task("probe.run", args=(tag,))) for i in range(200)])
            await client.flush(timeout=30)
            assert all(h._ticket.done for h in handles)
            assert await handles[0].accepted() == handles[0].task_id
            last = await client.dispatch("a:last", Task("probe.run", args=(tag,)))
        assert last._ticket.done  # leaving the block flushed it
        return [h.task_id for h in [*handles, last]]

    task_ids = asyncio.run(run())
    eventually(lambda: set(runs(local, tag)) == set(task_ids), 60, "every task to run")


def test_a_client_killed_after_flush_loses_nothing(local: LocalCluster) -> None:
    tag = "killed-client"
    script = textwrap.dedent(f"""
        from ringpool import Cluster, Task
        cluster = Cluster.connect()
        for i in range(2000):
            cluster.dispatch(f"kill:{{i}}", Task("probe.run", args=({tag!r}, 0.001)))
        cluster.flush()
        print("flushed", flush=True)
        import time
        time.sleep(600)
    """)
    client = ManagedProcess("client", [sys.executable, "-c", script],
                            local.workdir / "killed-client.log", local._child_env()).start()
    try:
        eventually(lambda: "flushed" in client.log_tail(), 60,
                   f"the client to flush (log: {client.log_path})")
        client.send_signal(signal.SIGKILL)
        assert client.wait(30) == -signal.SIGKILL
    finally:
        client.stop()
    # Nobody waits for these results any more; every task still runs, once.
    eventually(lambda: len(runs(local, tag)) == 2000, 120, "all 2,000 tasks to run")
    assert set(runs(local, tag).values()) == {1}


def test_unknown_task_is_raised_by_dispatch_itself(local: LocalCluster) -> None:
    with connect(local) as cluster:
        assert "probe.run" in (cluster.ring.task_names or ())
        with pytest.raises(UnknownTask, match=r"no\.such\.task"):
            cluster.dispatch("k", Task("no.such.task"))
        with pytest.raises(UnknownTask):
            cluster.dispatch_many([("k", Task("demo.add", args=(1, 1))), ("k", Task("nope"))])
        assert cluster._async.router.window.tasks == 0  # nothing was queued

    async def run() -> None:
        async with AsyncCluster.connect(zk=local.zk, redis=local.redis,
                                        cluster=local.cluster) as client:
            with pytest.raises(UnknownTask):
                await client.dispatch("k", Task("no.such.task"))

    asyncio.run(run())


def test_a_refusal_lands_on_the_handle_and_in_on_refused(
    local: LocalCluster, caplog: pytest.LogCaptureFixture
) -> None:
    # A node that serves only ringpool.demo: the ring knows probe.run (the others serve
    # it), so the client sends it, and this owner refuses it.
    local.start_node("node-demo-only", extra=["--tasks", "ringpool.demo"])
    refused: list[tuple[str, Task, RingpoolError]] = []
    try:
        with connect(local, on_refused=lambda *args: refused.append(args)) as cluster:
            key = next(k for k in (f"r:{i}" for i in range(10_000))
                       if cluster.owner(k) == "node-demo-only")
            task = Task("probe.run", args=("refused",))
            handle = cluster.dispatch(key, task)
            with pytest.raises(UnknownTask, match=r"probe\.run"):
                handle.accepted(timeout=30)
            with pytest.raises(UnknownTask):
                handle.result(timeout=30)
            assert [(k, t, type(e)) for k, t, e in refused] == [(key, task, UnknownTask)]
        with connect(local) as cluster:  # no callback: a log line says it
            cluster.dispatch(key, task)
        assert f"task probe.run for key {key!r} was not accepted: UnknownTask" in caplog.text
    finally:
        assert local.stop_node("node-demo-only") == 0
        del local.nodes["node-demo-only"]


def test_outstanding_tasks_are_bounded_dispatch_blocks_then_raises(local: LocalCluster) -> None:
    tag = "bounded"
    with connect(local, max_outstanding=20, dispatch_timeout_s=1.0) as cluster:
        for process in local.nodes.values():
            process.send_signal(signal.SIGSTOP)  # owners stop answering
        try:
            handles = [cluster.dispatch(f"b:{i}", Task("probe.run", args=(tag,)))
                       for i in range(20)]
            started = time.monotonic()
            with pytest.raises(ClusterUnavailable, match="max_outstanding=20"):
                cluster.dispatch("b:20", Task("probe.run", args=(tag,)))
            assert time.monotonic() - started >= 1.0  # it blocked for dispatch_timeout_s
        finally:
            for process in local.nodes.values():
                process.send_signal(signal.SIGCONT)
        for handle in handles:
            handle.result(timeout=60)
    assert len(runs(local, tag)) == 20  # the 21st never went


def test_ordered_tasks_keep_their_order_across_batches_in_flight_and_a_re_route(
    local: LocalCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    tag = "order"
    flushes: list[list[int]] = []
    cut = links.batches

    def recorded(tickets: list) -> list[list]:  # type: ignore[type-arg]
        messages = cut(tickets)
        flushes.append([len(m) for m in messages])
        return messages

    monkeypatch.setattr(links, "MAX_BATCH", 4)
    monkeypatch.setattr(links, "batches", recorded)
    with connect(local) as client:
        membership = client._async.membership
        assert membership is not None
        membership.stop()  # the client hears of ring changes only when it asks
        local.start_node("node-new")
        try:
            fresh = membership.client  # the same ZooKeeper: read the new ring through it
            new_ring = Membership(fresh, local.cluster).refresh()
            nodes_ring_ready(local, new_ring.version)
            key = next(k for k in (f"o:{i}" for i in range(10_000))
                       if new_ring.owner(k) == "node-new")
            old_owner = client.owner(key)
            assert old_owner != "node-new"
            task = Task("probe.run", args=(tag,), ordered=True)
            # The old owner is paused: twelve tasks go to it at once, three messages of
            # four in flight together, and stay unanswered.
            local.nodes[old_owner].send_signal(signal.SIGSTOP)
            try:
                first = client.dispatch_many([(key, task)] * 12)
                eventually(lambda: bool(flushes), 30, "the first send")
                membership.refresh()  # the client learns the new ring meanwhile
                assert client.owner(key) == "node-new"
                later = [client.dispatch(key, task) for _ in range(12)]
            finally:
                local.nodes[old_owner].send_signal(signal.SIGCONT)
            # The old owner answers WRONG_OWNER; the twelve go to the new owner, and the
            # later twelve, which the new ring sends there too, go only behind them.
            client.flush(timeout=60)
            handles = first + later
            assert flushes[0] == [4, 4, 4]
            assert {h.result(timeout=60)["node"] for h in handles} == {"node-new"}
            assert started_order(local, tag) == [h.task_id for h in handles]
        finally:
            assert local.stop_node("node-new") == 0
            del local.nodes["node-new"]
