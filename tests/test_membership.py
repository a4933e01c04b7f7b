"""Membership against a real ZooKeeper: watchers in two processes converge on one ring."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from unittest import mock

import pytest

from ringpool.core.membership import MemberReader, Membership, connect_zookeeper
from ringpool.core.naming import Names
from ringpool.core.ring import Ring
from tests.helpers import eventually

WATCHER = """
import json, sys, time
from ringpool.core.membership import Membership, connect_zookeeper
def show(ring):
    print(json.dumps({"version": ring.version, "members": sorted(ring.members)}), flush=True)
client = connect_zookeeper(sys.argv[1])
m = Membership(client, sys.argv[2], on_change=show).start()
show(m.ring)
sys.stdin.read()
"""
# A change usually reaches both watchers in well under a second; the bound is for a
# loaded 2-core CI machine, where a watch callback or a child's stdout can lag seconds.
CONVERGE_WITHIN_S = 10.0


class ChildWatcher:
    """A Membership in another process, reporting each ring it sees on stdout."""

    def __init__(self, zk: str, cluster: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WATCHER, zk, cluster],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        self.rings: queue.Queue[dict[str, object]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.latest: dict[str, object] = {}

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.rings.put(json.loads(line))

    def wait_for(self, members: list[str], timeout: float) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        while self.latest.get("members") != members:
            self.latest = self.rings.get(timeout=max(0.0, deadline - time.monotonic()))
        return self.latest

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def register(zk: str, cluster: str, node_id: str):  # type: ignore[no-untyped-def]
    client = connect_zookeeper(zk)
    client.create(
        Names(cluster).member(node_id),
        json.dumps({"addr": "127.0.0.1:1", "weight": 1.0, "started_at": time.time()}).encode(),
        ephemeral=True, makepath=True,
    )
    return client


@pytest.fixture
def child(zk_hosts: str, cluster_name: str) -> Iterator[ChildWatcher]:
    watcher = ChildWatcher(zk_hosts, cluster_name)
    watcher.wait_for([], timeout=30)
    yield watcher
    watcher.close()


def test_two_processes_converge_on_every_change(
    zk_hosts: str, cluster_name: str, zk_client, child: ChildWatcher  # type: ignore[no-untyped-def]
) -> None:
    local = Membership(zk_client, cluster_name).start()
    try:
        sessions = []
        for step, node_id in enumerate(["node-0", "node-1", "node-2"], start=1):
            sessions.append(register(zk_hosts, cluster_name, node_id))
            expected = [f"node-{i}" for i in range(step)]
            started = time.monotonic()
            ring = local.wait_for(lambda r, e=expected: sorted(r.members) == e,
                                  timeout=CONVERGE_WITHIN_S)
            seen = child.wait_for(expected, timeout=CONVERGE_WITHIN_S)
            took = time.monotonic() - started
            assert took <= CONVERGE_WITHIN_S
            assert seen["version"] == ring.version
            print(f"{node_id} joined: both watchers at v{ring.version} after {took:.3f}s")
        # Closing a member's session removes it from both rings.
        sessions[1].stop()
        sessions[1].close()
        remaining = ["node-0", "node-2"]
        ring = local.wait_for(lambda r: sorted(r.members) == remaining, timeout=CONVERGE_WITHIN_S)
        assert child.wait_for(remaining, timeout=CONVERGE_WITHIN_S)["version"] == ring.version
        for session in (sessions[0], sessions[2]):
            session.stop()
            session.close()
        local.wait_for(lambda r: not r.members, timeout=CONVERGE_WITHIN_S)
    finally:
        local.stop()


def test_ring_version_only_grows(zk_hosts: str, cluster_name: str, zk_client) -> None:  # type: ignore[no-untyped-def]
    versions: list[int] = []
    local = Membership(zk_client, cluster_name, on_change=lambda r: versions.append(r.version))
    local.start()
    try:
        for i in range(4):
            session = register(zk_hosts, cluster_name, f"n{i}")
            local.wait_for(lambda r, i=i: f"n{i}" in r.members, timeout=5)
            session.stop()
            session.close()
            local.wait_for(lambda r, i=i: f"n{i}" not in r.members, timeout=5)
        assert versions == sorted(versions)
        assert len(set(versions)) == len(versions)
    finally:
        local.stop()


def test_unreadable_member_data_is_ignored_not_fatal(
    zk_client, cluster_name: str  # type: ignore[no-untyped-def]
) -> None:
    names = Names(cluster_name)
    zk_client.create(names.member("garbage"), b"not json", ephemeral=True, makepath=True)
    zk_client.create(
        names.member("good"), json.dumps({"addr": "127.0.0.1:5"}).encode(), ephemeral=True
    )
    local = Membership(zk_client, cluster_name).start()
    try:
        ring: Ring = local.wait_for(lambda r: "good" in r.members, timeout=5)
        assert sorted(ring.members) == ["good"]
    finally:
        local.stop()


@pytest.mark.parametrize("weight", ["NaN", "Infinity", "-Infinity", "1e9", "100.5", "0.001", "0",
                                    "-1", '"heavy"', "null"])
def test_a_member_with_an_impossible_weight_is_ignored(
    zk_client, cluster_name: str, weight: str  # type: ignore[no-untyped-def]
) -> None:
    """NaN froze every ring build; 1e9 asked for 128e9 points. Weights are 0.01-100."""
    names = Names(cluster_name)
    bad = b'{"addr": "127.0.0.1:6", "weight": %s}' % weight.encode()
    zk_client.create(names.member("bad"), bad, ephemeral=True, makepath=True)
    zk_client.create(names.member("good"), json.dumps({"addr": "127.0.0.1:5", "weight": 100}
                                                      ).encode(), ephemeral=True)
    local = Membership(zk_client, cluster_name).start()
    try:
        ring: Ring = local.wait_for(lambda r: "good" in r.members, timeout=5)
        assert sorted(ring.members) == ["good"]
        assert ring.owner("any key") == "good"
    finally:
        local.stop()


def test_unreachable_zookeeper_is_a_typed_error_within_its_timeout() -> None:
    from ringpool.errors import ClusterUnavailable
    from ringpool.testing.local import free_port

    started = time.monotonic()
    with pytest.raises(ClusterUnavailable, match="cannot reach ZooKeeper"):
        connect_zookeeper(f"127.0.0.1:{free_port()}", timeout=1.0)
    assert time.monotonic() - started < 10


def test_expired_session_is_reported_and_the_ring_rebuilt(
    zk_hosts: str, cluster_name: str
) -> None:
    from kazoo.client import KazooClient

    states: list[str] = []
    client = connect_zookeeper(zk_hosts)
    local = Membership(client, cluster_name, on_state=states.append).start()
    first = register(zk_hosts, cluster_name, "before")
    try:
        local.wait_for(lambda r: "before" in r.members, timeout=5)
        # Expire our session the classic way: another client closes it.
        session_id, password = client.client_id
        thief = KazooClient(hosts=zk_hosts, client_id=(session_id, password))
        thief.start(timeout=10)
        thief.stop()
        thief.close()
        eventually(lambda: "LOST" in states, 20, "LOST to be reported")
        # kazoo opens a new session; the ring is rebuilt and watched again.
        second = register(zk_hosts, cluster_name, "after")
        ring = local.wait_for(lambda r: {"before", "after"} <= set(r.members), timeout=20)
        assert ring.version >= 2
        assert local.state == "CONNECTED"
        second.stop()
        second.close()
        local.wait_for(lambda r: "after" not in r.members, timeout=10)
    finally:
        first.stop()
        first.close()
        local.stop()
        client.stop()
        client.close()


def test_a_ring_change_reads_only_the_members_that_joined(
    zk_client, cluster_name: str  # type: ignore[no-untyped-def]
) -> None:
    names = Names(cluster_name)

    def join(node_id: str, addr: str = "127.0.0.1:1") -> None:
        zk_client.create(names.member(node_id), json.dumps({"addr": addr}).encode(),
                         ephemeral=True, makepath=True)

    for i in range(10):
        join(f"n{i}")
    zk_client.create(names.member("garbage"), b"not json", ephemeral=True)
    reader = MemberReader(zk_client, names)
    with mock.patch.object(zk_client, "get_async", wraps=zk_client.get_async) as reads:
        assert sorted(reader.read().members) == sorted(f"n{i}" for i in range(10))
        assert reads.call_count == 11  # the first read reads every member
        reads.reset_mock()
        assert reader.read().members.keys() == {f"n{i}" for i in range(10)}
        assert reads.call_count == 0  # nothing changed: the listing alone
        join("n10")
        assert "n10" in reader.read().members
        assert reads.call_count == 1  # a join: only the newcomer
        zk_client.delete(names.member("n3"))
        ring = reader.read()
        assert "n3" not in ring.members and len(ring) == 10
        assert reads.call_count == 1  # a leave: no member read
        # A member that registered again between two reads (a new znode, a new address)
        # is read again, with its new epoch.
        old = ring.members["n0"]
        zk_client.delete(names.member("n0"))
        join("n0", addr="127.0.0.1:2")
        reads.reset_mock()
        again = reader.read().members["n0"]
        assert (again.addr, again.epoch > old.epoch) == ("127.0.0.1:2", True)
        assert reads.call_count == 11  # which one is unknown: every member is read again
