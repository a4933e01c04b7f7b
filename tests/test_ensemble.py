"""Against a 3-server ZooKeeper ensemble: membership and dispatch as on one server; the
leader killed under load; quorum lost and regained.

The membership and dispatch tests named below run here again, their ``zookeeper`` being
the ensemble (the whole suite does with ``pytest --zookeeper ensemble``). The ensemble is
shared with them: a test that stops servers starts them again and waits for the quorum.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterator

import grpc
import pytest
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ringpool import Cluster, Task, TaskHandle
from ringpool.core.membership import connect_zookeeper, read_ring
from ringpool.core.naming import Names
from ringpool.testing.local import LocalCluster, RedisServer, ZooKeeperEnsemble
from ringpool.v1 import node_pb2 as pb
from ringpool.v1 import node_pb2_grpc as pb_grpc
from tests import test_dispatch, test_membership
from tests.helpers import eventually, gauges, nodes_ring_ready
from tests.tasks_flaky import probe_runs_key
from tests.test_dispatch import TASK_MODULES, client_ring_ready

# The representative subset, with the fixtures they need (resolved here, on the ensemble).
child = test_membership.child
test_two_processes_converge_on_every_change = (
    test_membership.test_two_processes_converge_on_every_change)
test_ring_version_only_grows = test_membership.test_ring_version_only_grows
test_expired_session_is_reported_and_the_ring_rebuilt = (
    test_membership.test_expired_session_is_reported_and_the_ring_rebuilt)
local = test_dispatch.local
cluster = test_dispatch.cluster
test_dispatch_many_returns_every_result_in_order = (
    test_dispatch.test_dispatch_many_returns_every_result_in_order)
test_every_task_of_a_key_runs_on_its_owner = test_dispatch.test_every_task_of_a_key_runs_on_its_owner
test_stale_client_ring_still_reaches_the_right_owner = (
    test_dispatch.test_stale_client_ring_still_reaches_the_right_owner)

# An election on loopback takes about a second; the bounds are for a loaded 2-core machine.
ELECTION_WITHIN_S = 60.0
CONVERGE_WITHIN_S = 30.0
# The failover cluster's session timeout: the quorum stays lost longer than this.
SESSION_TIMEOUT_S = 4.0


@pytest.fixture(scope="module")
def zookeeper(zookeeper_ensemble: ZooKeeperEnsemble) -> ZooKeeperEnsemble:
    return zookeeper_ensemble


@pytest.fixture(scope="module")
def failover(
    zookeeper_ensemble: ZooKeeperEnsemble, redis_server: RedisServer
) -> Iterator[LocalCluster]:
    """A cluster of its own for the tests that stop ZooKeeper servers."""
    sessions = ["--zk-session-timeout", str(SESSION_TIMEOUT_S)]
    with LocalCluster(nodes=3, coordinators=1, tasks=TASK_MODULES, zk=zookeeper_ensemble.address,
                      redis=redis_server.url, node_args=sessions,
                      coordinator_args=sessions) as lc:
        yield lc


@pytest.fixture
def ensemble(zookeeper_ensemble: ZooKeeperEnsemble) -> Iterator[ZooKeeperEnsemble]:
    """The ensemble, whole again (every server up, one leader) after the test."""
    yield zookeeper_ensemble
    for server_id, server in zookeeper_ensemble.servers.items():
        if server.process is None or not server.process.alive():
            zookeeper_ensemble.start_server(server_id, wait=False)
    zookeeper_ensemble.wait_for_quorum(ELECTION_WITHIN_S)


def epochs(local: LocalCluster) -> dict[str, int]:
    """Each member's epoch (its znode's creation zxid): it changes when a node registers
    again, as after an expired session."""
    zk = connect_zookeeper(local.zk)
    try:
        return {n: m.epoch for n, m in read_ring(zk, Names(local.cluster)).members.items()}
    finally:
        zk.stop()
        zk.close()


def node_status(local: LocalCluster, node_id: str) -> pb.StatusResponse:
    with grpc.insecure_channel(f"127.0.0.1:{local.node_ports[node_id]}") as channel:
        return pb_grpc.NodeStub(channel).Status(pb.StatusRequest(), timeout=5)


def node_health(local: LocalCluster, node_id: str) -> int:
    with grpc.insecure_channel(f"127.0.0.1:{local.node_ports[node_id]}") as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=5)
    return int(reply.status)


def connected(local: LocalCluster, node_id: str) -> tuple[float, float]:
    """(ringpool_zookeeper_connected, ringpool_ring_stale_seconds) of a node now."""
    metrics = gauges(local.metrics_ports[node_id])
    return metrics["ringpool_zookeeper_connected"], metrics["ringpool_ring_stale_seconds"]


def converge_on_a_join_and_a_leave(local: LocalCluster, client: Cluster, node_id: str) -> None:
    """A node joins and drains; the client and every node see both changes."""
    local.start_node(node_id)
    client_ring_ready(client, set(local.nodes), CONVERGE_WITHIN_S)
    nodes_ring_ready(local, client.ring.version, CONVERGE_WITHIN_S)
    assert local.stop_node(node_id) == 0
    del local.nodes[node_id]
    client_ring_ready(client, set(local.nodes), CONVERGE_WITHIN_S)
    nodes_ring_ready(local, client.ring.version, CONVERGE_WITHIN_S)


class Producer(threading.Thread):
    """Dispatches batches of ``probe.run`` until stopped; keeps every handle and error."""

    def __init__(self, client: Cluster, tag: str) -> None:
        super().__init__(daemon=True)
        self.client, self.tag = client, tag
        self.handles: list[TaskHandle] = []
        self.errors: list[BaseException] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        sent = 0
        try:
            while not self.stopping.is_set():
                batch = [(f"{self.tag}:{i}", Task("probe.run", args=(self.tag,)))
                         for i in range(sent, sent + 50)]
                self.handles.extend(self.client.dispatch_many(batch))
                sent += len(batch)
                self.stopping.wait(0.05)
        except BaseException as exc:  # the test asserts there is none
            self.errors.append(exc)

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=60)


def test_leader_killed_dispatch_continues_and_membership_converges(
    failover: LocalCluster, ensemble: ZooKeeperEnsemble
) -> None:
    local, tag = failover, "leader-kill"
    before = epochs(local)
    with local.connect() as client:
        client_ring_ready(client, set(local.nodes))
        producer = Producer(client, tag)
        producer.start()
        eventually(lambda: len(producer.handles) >= 200, 60, "tasks dispatched before the kill")
        leader = ensemble.leader()
        assert leader is not None
        ensemble.kill_server(leader)
        assert ensemble.wait_for_leader(ELECTION_WITHIN_S) != leader
        dispatched_at_election = len(producer.handles)
        converge_on_a_join_and_a_leave(local, client, "node-joiner")
        eventually(lambda: len(producer.handles) >= dispatched_at_election + 200, 60,
                   "tasks dispatched after the election")
        producer.stop()
        assert producer.errors == []
        results = [h.result(timeout=120) for h in producer.handles]
    runs = redis.Redis.from_url(local.redis).hgetall(probe_runs_key(tag))
    assert len(results) == len(runs) == len(producer.handles)  # every task ran
    assert Counter(int(n) for n in runs.values()) == {1: len(runs)}  # and once only
    # The sessions rode out the election: no node registered again, none was recovered.
    assert epochs(local) == before


def test_quorum_lost_nodes_serve_on_their_last_ring_and_say_so(
    failover: LocalCluster, ensemble: ZooKeeperEnsemble, caplog: pytest.LogCaptureFixture
) -> None:
    local, tag = failover, "no-quorum"
    caplog.set_level(logging.INFO, logger="ringpool.core.membership")
    before = epochs(local)
    nodes = sorted(local.nodes)
    with local.connect() as client:
        client_ring_ready(client, set(nodes))
        ring = client.ring
        leader = ensemble.leader()
        follower = next(i for i in ensemble.servers if i != leader)
        assert leader is not None
        ensemble.kill_server(leader)
        ensemble.stop_server(follower)

        # What an operator sees: a metric, the Status RPC and a log line on every node
        # (and in the client's log); the health check stays SERVING, as the node serves.
        eventually(lambda: all(connected(local, n)[0] == 0 for n in nodes), CONVERGE_WITHIN_S,
                   "every node to report ZooKeeper unreachable")
        eventually(lambda: all(connected(local, n)[1] > 0 for n in nodes), 10,
                   "the nodes' ring to be reported stale")
        said = f"ZooKeeper unreachable: routing on the last ring v{ring.version} (3 members)"
        for node_id in nodes:
            status = node_status(local, node_id)
            assert (status.zookeeper_state, status.ring_version) == ("SUSPENDED", ring.version)
            assert status.ring_stale_s > 0
            assert node_health(local, node_id) == health_pb2.HealthCheckResponse.SERVING
            eventually(lambda n=node_id: said in local.nodes[n].log_path.read_text(), 10,
                       f"{node_id} to log that it routes on its last ring")
        assert "ZooKeeper unreachable: routing on the last ring" in caplog.text

        # Dispatch goes on by the last ring: every key still lands on its owner.
        keys = [f"{tag}:{i}" for i in range(300)]
        handles = client.dispatch_many([(k, Task("probe.run", args=(tag,))) for k in keys])
        for key, handle in zip(keys, handles, strict=True):
            assert handle.result(timeout=60)["node"] == ring.owner(key)

        # Longer than a session lasts: the quorum's new leader gives every session a
        # fresh timeout, and processes reconnect within about a second of it.
        eventually(lambda: all(connected(local, n)[1] > SESSION_TIMEOUT_S * 1.5 for n in nodes),
                   30, "the outage to outlast the nodes' session timeout", interval=0.5)
        ensemble.start_server(leader, wait=False)
        ensemble.start_server(follower, wait=False)
        ensemble.wait_for_quorum(ELECTION_WITHIN_S)
        eventually(lambda: all(connected(local, n) == (1, 0) for n in nodes), CONVERGE_WITHIN_S,
                   "every node to report ZooKeeper connected again")
        for node_id in nodes:
            assert node_status(local, node_id).zookeeper_state == "CONNECTED"
            assert "ZooKeeper connected again" in local.nodes[node_id].log_path.read_text()
        # The sessions outlived the outage, so no node registered again (nor were its
        # tasks recovered); ring changes are seen again.
        assert epochs(local) == before
        converge_on_a_join_and_a_leave(local, client, "node-after-quorum")
        local.wait_for_leader(CONVERGE_WITHIN_S)
    runs = redis.Redis.from_url(local.redis).hgetall(probe_runs_key(tag))
    assert Counter(int(n) for n in runs.values()) == {1: len(keys)}
