"""Start-up and shut-down of the processes: a start-up that fails half-way says why in one
line, exits 2 at once and leaves nothing behind (no member znode, no thread, no port); a
restarted node reclaims its own tasks under its --max-crash-recoveries; the election
contends again after a failed attempt."""

from __future__ import annotations

import asyncio
import functools
import gc
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kazoo.client import KazooClient
from kazoo.security import make_acl

from ringpool import Cluster, TaskFailed, demo
from ringpool.core.naming import Names
from ringpool.errors import ClusterUnavailable, ConfigError
from ringpool.store.store import StateStore, TaskRecord
from ringpool.testing.local import LocalCluster, RedisServer, ZooKeeperServer, free_port
from ringpool_coordinator.app import run
from ringpool_coordinator.election import Leadership
from ringpool_coordinator.settings import CoordinatorSettings
from ringpool_node.server import serve
from ringpool_node.settings import NodeSettings
from tests.helpers import eventually, eventually_async, records

PROMPTLY_S = 20.0  # a failed start-up must end well within this, on a loaded machine


def unreachable_redis() -> str:
    return f"redis://:secret@127.0.0.1:{free_port()}/0"


def launch(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", module, "--metrics-port", "0", *args],
                          capture_output=True, text=True, env=env, timeout=PROMPTLY_S * 3)
    assert time.monotonic() - started < PROMPTLY_S, done.stderr
    return done


def members(zk: KazooClient, cluster: str) -> list[str]:
    path = Names(cluster).members
    return zk.get_children(path) if zk.exists(path) else []


@pytest.fixture
def threads_before() -> Iterator[set[threading.Thread]]:
    """The threads alive before the test; the test checks none was added after it."""
    yield set(threading.enumerate())


def no_new_threads(before: set[threading.Thread]) -> None:
    def left() -> set[threading.Thread]:
        gc.collect()  # gRPC's poller thread ends once the (stopped) server is collected
        return set(threading.enumerate()) - before

    eventually(lambda: not left(), 10, "every thread started to end")


@pytest.mark.parametrize("module", ["ringpool_node", "ringpool_coordinator"])
def test_a_process_that_cannot_reach_redis_says_so_and_exits_2(
    module: str, zk_hosts: str, zk_client: KazooClient, cluster_name: str
) -> None:
    done = launch(module, "--zk", zk_hosts, "--redis", unreachable_redis(),
                  "--cluster", cluster_name, *(["--listen", "127.0.0.1:0"]
                                               if module == "ringpool_node" else []))
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    prog = module.replace("_", "-")
    assert last.startswith(f"{prog}: cannot reach Redis at redis://:***@127.0.0.1:"), last
    assert "secret" not in done.stderr
    assert "Traceback" not in done.stderr
    assert members(zk_client, cluster_name) == []


def test_a_node_whose_metrics_port_is_taken_leaves_nothing_behind(
    zk_hosts: str, redis_url: str, zk_client: KazooClient, cluster_name: str,
    threads_before: set[threading.Thread],
) -> None:
    listen_port = free_port()
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        settings = NodeSettings(zk=zk_hosts, redis=redis_url, cluster=cluster_name,
                                node_id="n-metrics", listen=f"127.0.0.1:{listen_port}",
                                metrics_port=taken.getsockname()[1],
                                tasks=("ringpool.demo",))
        # ZooKeeper, Redis, the pools and the gRPC server were up when this failed.
        with pytest.raises(ConfigError, match="cannot serve metrics on port"):
            asyncio.run(serve(settings))
    assert members(zk_client, cluster_name) == []
    no_new_threads(threads_before)
    with socket.socket() as again:  # the gRPC port was let go
        again.bind(("127.0.0.1", listen_port))


def test_a_node_that_cannot_reach_redis_leaves_no_thread(
    zk_hosts: str, cluster_name: str, threads_before: set[threading.Thread]
) -> None:
    settings = NodeSettings(zk=zk_hosts, redis=unreachable_redis(), cluster=cluster_name,
                            node_id="n-redis", listen="127.0.0.1:0", metrics_port=0)
    with pytest.raises(ClusterUnavailable, match="cannot reach Redis"):
        asyncio.run(serve(settings))
    no_new_threads(threads_before)


def test_a_coordinator_that_fails_after_connecting_leaves_nothing_behind(
    zk_hosts: str, redis_url: str, zk_client: KazooClient, cluster_name: str,
    threads_before: set[threading.Thread],
) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        settings = CoordinatorSettings(zk=zk_hosts, redis=redis_url, cluster=cluster_name,
                                       metrics_port=taken.getsockname()[1])
        # Its ZooKeeper session, its state store and its client (ring watch) were open.
        with pytest.raises(ConfigError, match="cannot serve metrics on port"):
            asyncio.run(run(settings))
    no_new_threads(threads_before)
    election = Names(cluster_name).election
    assert not zk_client.exists(election) or zk_client.get_children(election) == []


async def test_the_election_contends_again_until_it_wins(
    zk_client: KazooClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Attempts fail while the election's parent refuses new children; once it accepts
    them, the next attempt wins."""
    parent = f"/ringpool-election-test-{uuid.uuid4().hex}"
    locked = [make_acl("world", "anyone", read=True, admin=True)]
    zk_client.create(parent, b"", acl=locked)
    leadership = Leadership(zk_client, f"{parent}/lock", "contender")
    contending = asyncio.create_task(leadership.wait_elected())
    try:
        await eventually_async(
            lambda: caplog.text.count("election attempt failed") >= 3, 20, "three refusals")
        assert not contending.done()
        zk_client.set_acls(parent, [make_acl("world", "anyone", all=True)])
        await asyncio.wait_for(contending, 10)
        assert zk_client.get_children(f"{parent}/lock")  # our lock znode: we lead
    finally:
        contending.cancel()
        await leadership.release()
        leadership.close()
    assert zk_client.get_children(f"{parent}/lock") == []



def record(local: LocalCluster, task_id: str) -> TaskRecord | None:
    return records(local, [task_id])[0]


def test_a_restarted_node_reclaims_its_tasks_under_its_own_crash_limit(
    zk_hosts: str, redis_url: str
) -> None:
    """The node's limit (1) decides, not the coordinator's (100): the second restart finds
    the task recovered once already and sends it to the DLQ as poison. Each restart waits
    for the killed process's session to end, holding the id's restarting znode, which
    keeps the coordinator away from the id's tasks."""
    with LocalCluster(nodes=1, coordinators=1, zk=zk_hosts, redis=redis_url,
                      node_args=["--max-crash-recoveries", "1", "--zk-session-timeout", "4"],
                      coordinator_args=["--max-crash-recoveries", "100"]) as local, \
            Cluster.connect(zk=local.zk, redis=local.redis, cluster=local.cluster) as cluster:
        handle = cluster.dispatch("k", demo.sleep.s(60))
        def running(recoveries: int) -> bool:
            found = record(local, handle.task_id)
            return found is not None and (found.state, found.recoveries) == ("RUNNING", recoveries)

        for recoveries in (0, 1):
            eventually(functools.partial(running, recoveries), 60,
                       f"a run after {recoveries} recoveries")
            local.stop_node("node-0", signal.SIGKILL)
            local.start_node("node-0")
        with pytest.raises(TaskFailed, match="PoisonTask"):
            handle.result(timeout=60)
        final = record(local, handle.task_id)
        assert final is not None
        assert (final.state, final.dead_reason, final.recoveries) == ("FAILED", "poison", 2)


def test_a_process_that_asks_for_another_partition_count_does_not_start(
    zookeeper: ZooKeeperServer, redis_server: RedisServer, cluster_name: str
) -> None:
    async def record() -> int:
        store = StateStore.from_url(redis_server.url, cluster_name, partitions=8)
        try:
            return (await store.layout()).partitions
        finally:
            await store.close()

    assert asyncio.run(record()) == 8
    for module in ("ringpool_node", "ringpool_coordinator"):
        done = launch(module, "--zk", zookeeper.address, "--redis", redis_server.url,
                      "--cluster", cluster_name, "--partitions", "16")
        assert done.returncode == 2, done.stderr
        assert f"cluster {cluster_name!r} has 8 partitions" in done.stderr
        assert "Traceback" not in done.stderr


def test_a_sigterm_during_start_up_drains_instead_of_killing(
    zk_hosts: str, redis_url: str, cluster_name: str, tmp_path: Path,
) -> None:
    # The signal lands while the node is still starting (before it serves): it must
    # finish starting, leave the ring and exit 0 — never die of the default action.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    with open(tmp_path / "node.log", "wb") as log:
        node = subprocess.Popen(
            [sys.executable, "-m", "ringpool_node", "--zk", zk_hosts, "--redis", redis_url,
             "--cluster", cluster_name, "--node-id", "early", "--metrics-port", "0",
             "--listen", "127.0.0.1:0", "--tasks", "ringpool.demo"],
            stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            eventually(lambda: b"INFO" in (tmp_path / "node.log").read_bytes(), PROMPTLY_S,
                       "the node to start logging")
            node.send_signal(signal.SIGTERM)
            assert node.wait(PROMPTLY_S * 3) == 0, (tmp_path / "node.log").read_text()
        finally:
            node.kill()
