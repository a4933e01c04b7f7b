"""Clients that misbehave cannot grow a node without bound: one that never reads its stream,
many batches at once against the node's pending limit, a ring version far ahead."""

from __future__ import annotations

import re
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
import redis

from ringpool.core.envelope import DEFAULT_MAX_RETRIES, new_task_id
from ringpool.testing.local import LocalCluster, RedisServer, ZooKeeperServer
from ringpool.v1 import node_pb2 as pb
from ringpool.v1 import node_pb2_grpc as pb_grpc
from tests.helpers import eventually

MIB = 2**20


def envelope(name: str, payload: bytes, key: str = "", ring_version: int = 0) -> pb.TaskEnvelope:
    return pb.TaskEnvelope(task_id=new_task_id(), key=key or new_task_id(), name=name,
                           payload=payload, codec="json", attempt=1,
                           max_retries=DEFAULT_MAX_RETRIES, ring_version=ring_version)


def rss_bytes(pid: int) -> int:
    status = open(f"/proc/{pid}/status").read()  # noqa: SIM115 - read at once
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) * 1024  # type: ignore[union-attr]


@pytest.fixture
def node(request: pytest.FixtureRequest, zookeeper: ZooKeeperServer,
         redis_server: RedisServer) -> Iterator[LocalCluster]:
    with LocalCluster(nodes=1, coordinators=0, zk=zookeeper.address, redis=redis_server.url,
                      tasks=["ringpool.demo", "tests.tasks_flaky"],
                      node_args=list(getattr(request, "param", []))) as local:
        yield local


def channel_to(local: LocalCluster) -> grpc.Channel:
    return grpc.insecure_channel(f"127.0.0.1:{local.node_ports['node-0']}")


def accepted_blobs(local: LocalCluster) -> int:
    """How many probe.blob tasks the node has accepted (its Prometheus counter)."""
    port = local.metrics_ports["node-0"]
    scrape = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    found = re.search(r'^ringpool_tasks_accepted_total\{task="probe.blob"\} (\S+)$', scrape, re.M)
    return int(float(found.group(1))) if found else 0


@pytest.mark.parametrize("node", [["--max-stream-bytes", str(MIB)]], indirect=True)
def test_a_client_that_never_reads_its_stream_cannot_grow_the_node(node: LocalCluster) -> None:
    """A client asks for 200 MB of results, a wave at a time, and never reads one: the node
    keeps about its 1 MiB cap for it and stops taking its batches."""
    pid = node.nodes["node-0"].pid
    waves, per_wave, size = 40, 50, 100_000

    def batches() -> Iterator[pb.SubmitRequest]:
        for wave in range(waves):
            yield pb.SubmitRequest(batch_id=wave, tasks=[
                envelope("probe.blob", b'{"args":[%d]}' % size) for _ in range(per_wave)])
            time.sleep(0.1)

    before = rss_bytes(pid)
    with channel_to(node) as channel:
        responses = pb_grpc.NodeStub(channel).Submit(batches(), timeout=120)
        stub = pb_grpc.NodeStub(channel)

        def settled() -> bool:
            first = (accepted_blobs(node), stub.Status(pb.StatusRequest(), timeout=5).in_flight)
            time.sleep(1.5)
            return first[1] == 0 and first == (
                accepted_blobs(node), stub.Status(pb.StatusRequest(), timeout=5).in_flight)

        time.sleep(waves * 0.1)  # the client has sent (or tried to send) every wave
        eventually(settled, 60, "the node to settle")
        grown, accepted = rss_bytes(pid) - before, accepted_blobs(node)
        print(f"\n[never reads] accepted {accepted} of {waves * per_wave} tasks, "
              f"node RSS grew {grown / MIB:.1f} MiB (results asked for: "
              f"{waves * per_wave * size / MIB:.0f} MiB)")
        assert grown < 50 * MIB
        assert accepted < waves * per_wave // 4  # it stopped taking the client's batches
        responses.cancel()
    # The node serves others all the while.
    with channel_to(node) as channel:
        reply = pb_grpc.NodeStub(channel).SubmitBatch(pb.SubmitRequest(tasks=[
            envelope("demo.add", b'{"args":[1,2]}')]), timeout=10)
    assert [a.code for a in reply.acks] == [pb.ACCEPTED]


@pytest.mark.parametrize("node", [["--max-pending", "10"]], indirect=True)
def test_batches_accepted_at_once_never_overrun_the_pending_limit(
    node: LocalCluster, redis_client: redis.Redis,
) -> None:
    """Four batches of 10 arrive while Redis holds the first accept: 10 accepted, not 40."""
    start = threading.Barrier(4)

    def submit(_: int) -> list[int]:
        with channel_to(node) as channel:
            stub = pb_grpc.NodeStub(channel)
            request = pb.SubmitRequest(tasks=[envelope("demo.sleep", b'{"args":[1]}')
                                              for _ in range(10)])
            start.wait()
            return [a.code for a in stub.SubmitBatch(request, timeout=30).acks]

    redis_client.execute_command("CLIENT", "PAUSE", 1000, "WRITE")  # the accepts wait
    with ThreadPoolExecutor(4) as pool:
        codes = [code for acks in pool.map(submit, range(4)) for code in acks]
    assert codes.count(pb.ACCEPTED) == 10, [pb.AckCode.Name(c) for c in codes]
    assert codes.count(pb.OVERLOADED) == 30


def zookeeper_requests(port: int) -> int:
    """Requests the ZooKeeper server has received so far (its ``srvr`` report)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"srvr")
        report = b"".join(iter(lambda: sock.recv(4096), b"")).decode()
    return int(re.search(r"Received: (\d+)", report).group(1))  # type: ignore[union-attr]


def test_a_far_ahead_ring_version_does_not_make_every_batch_read_zookeeper(
    node: LocalCluster, zookeeper: ZooKeeperServer,
) -> None:
    with channel_to(node) as channel:
        stub = pb_grpc.NodeStub(channel)
        before = zookeeper_requests(zookeeper.port)
        started = time.monotonic()
        for _ in range(300):
            reply = stub.SubmitBatch(pb.SubmitRequest(tasks=[
                envelope("demo.add", b'{"args":[1,1]}', ring_version=2**62)]), timeout=10)
            assert [a.code for a in reply.acks] == [pb.ACCEPTED]
        took = time.monotonic() - started
        requests = zookeeper_requests(zookeeper.port) - before
    print(f"\n[far-ahead ring version] 300 batches in {took:.1f}s: {requests} ZooKeeper requests")
    # At most one sync (a listing and a read per member) per second, plus session pings.
    assert requests <= 2 * (took + 1) + 20
