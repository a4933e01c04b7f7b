"""A node that reaches ZooKeeper but not Redis leaves the ring after a bound, its tasks run
elsewhere, and it comes back when Redis does. The cut is a TCP proxy in the test."""

from __future__ import annotations

import contextlib
import itertools
import socket
import threading
from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ringpool import Cluster, Task
from ringpool.core.envelope import build
from ringpool.testing.local import LocalCluster, RedisServer, ZooKeeperServer
from ringpool.v1 import node_pb2 as pb
from ringpool.v1 import node_pb2_grpc as pb_grpc
from tests.helpers import eventually, records


class Proxy:
    """Forwards TCP connections to ``target_port`` until ``cut()``: then it drops every
    connection and takes no new one, until ``restore()``."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._open = True
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, name="redis-proxy", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            if not self._open:
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                self._sockets |= {client, upstream}
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self._open = False
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._sockets.clear()

    def restore(self) -> None:
        self._open = True

    def close(self) -> None:
        self.cut()
        self._listener.close()


@pytest.fixture
def proxy(redis_server: RedisServer) -> Iterator[Proxy]:
    made = Proxy(redis_server.port)
    yield made
    made.close()


def serving(port: int) -> bool:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(),
                                                          timeout=5)
    return reply.status == health_pb2.HealthCheckResponse.SERVING  # type: ignore[no-any-return]


def test_a_node_cut_off_from_redis_leaves_the_ring_and_comes_back(
    zookeeper: ZooKeeperServer, redis_server: RedisServer, proxy: Proxy,
) -> None:
    with LocalCluster(nodes=1, coordinators=1, zk=zookeeper.address, redis=redis_server.url,
                      tasks=["ringpool.demo"], node_args=["--drain-timeout", "1"]) as local, \
            Cluster.connect(zk=local.zk, redis=local.redis, cluster=local.cluster) as client:
        local.start_node("node-1", extra=["--redis", f"redis://127.0.0.1:{proxy.port}/0",
                                          "--redis-lost-after", "2"])
        eventually(lambda: len(client.ring) == 2, 30, "both nodes in the ring")
        key = next(k for k in (f"k{i}" for i in itertools.count()) if client.owner(k) == "node-1")
        assert client.dispatch(key, Task("demo.where")).result(timeout=30)["node"] == "node-1"
        epoch = client.ring.members["node-1"].epoch
        running = client.dispatch(key, Task("demo.sleep", args=(10,)))
        eventually(lambda: running.status() == "RUNNING", 30, "a task running on node-1")

        proxy.cut()
        eventually(lambda: "node-1" not in client.ring.members, 30,
                   "the cut-off node to leave the ring")
        assert not serving(local.node_ports["node-1"])
        # Its keys go to node-0; what it held is recovered there (not counted as a crash).
        assert client.dispatch(key, Task("demo.where")).result(timeout=30)["node"] == "node-0"
        eventually(lambda: (r := records(local, [running.task_id])[0]) is not None
                   and r.state == "RUNNING" and r.node == "node-0", 30,
                   "the held task to run again on node-0")
        assert records(local, [running.task_id])[0].recoveries == 0  # type: ignore[union-attr]

        proxy.restore()
        eventually(lambda: "node-1" in client.ring.members, 30, "node-1 to come back")
        assert client.ring.members["node-1"].epoch != epoch
        eventually(lambda: serving(local.node_ports["node-1"]), 30, "node-1 to serve again")
        assert client.dispatch(key, Task("demo.where")).result(timeout=30)["node"] == "node-1"
        assert local.nodes["node-1"].alive()


def test_a_batch_whose_accept_cannot_reach_redis_gets_an_answer_per_task(
    zookeeper: ZooKeeperServer, redis_server: RedisServer, proxy: Proxy,
) -> None:
    with LocalCluster(nodes=0, coordinators=0, zk=zookeeper.address, redis=redis_server.url,
                      tasks=["ringpool.demo"]) as local, \
            Cluster.connect(zk=local.zk, redis=local.redis, cluster=local.cluster) as client:
        local.start_node("node-0", extra=["--redis", f"redis://127.0.0.1:{proxy.port}/0"])
        eventually(lambda: len(client.ring) == 1, 30, "the node in the ring")
        proxy.cut()
        envelope = build("k", Task("demo.where"), client.ring.version)
        with grpc.insecure_channel(f"127.0.0.1:{local.node_ports['node-0']}") as channel:
            reply = pb_grpc.NodeStub(channel).SubmitBatch(
                pb.SubmitRequest(batch_id=1, tasks=[envelope]), timeout=60)
        (ack,) = reply.acks  # an answer, not an RPC error: the client sends it again
        assert (ack.task_id, pb.AckCode.Name(ack.code)) in (
            (envelope.task_id, "INTERNAL"), (envelope.task_id, "DRAINING")), ack
        proxy.restore()
        assert client.dispatch("k", Task("demo.where")).result(timeout=60)["node"] == "node-0"
