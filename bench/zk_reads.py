"""ZooKeeper reads and writes per membership change, at 10 and 50 members.

``python -m bench.zk_reads [--members 10,50] [--changes 10] [--label after] [--json PATH]``

**Reads** — one standalone ZooKeeper; N members registered as ephemeral znodes holding a
node's data; a ``Membership`` (what every client, node, coordinator and dashboard runs to
keep its ring) on a client whose read requests are counted (``get_async``,
``get_children_async``, ``exists_async``: kazoo's sync calls go through these). Then
``--changes`` times: one member joins, then leaves again (so every change is made at N
members), each change waited for until the Membership has published the ring that
shows it. Reads per change = counted reads /
changes. Every process that watches the ring pays this on every change. Then 20 s
without a change: the Membership's periodic re-read (every 5 s, the safety net for a
missed watch) gives the idle reads per second.

**Writes** — ZooKeeper's zxid (``srvr``) counts committed write transactions. Its growth
while a real ``ringpool-node`` joins (start to registered), drains (SIGTERM to exit) and
dies (``kill -9`` to its session's expiry), next to a coordinator, is the writes per
membership change. Last, how many member-znode reads per second one client gets from
the server (pipelined): a floor of ZooKeeper's read capacity, to set the above against.

Before and after a change to the membership code: the same file against two source
trees, merged into one JSON by ``--label``::

    PYTHONPATH=/old/checkout/sdk:/old/checkout/node:/old/checkout/coordinator \\
        python -m bench.zk_reads --label before
    PYTHONPATH=sdk:node:coordinator python -m bench.zk_reads --label after
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kazoo.client import KazooClient

from bench.saving import RESULTS, save, saved
from ringpool.core.membership import Membership, connect_zookeeper
from ringpool.core.naming import Names
from ringpool.testing.local import LocalCluster, RedisServer, ZooKeeperServer, wait_until

READS = ("get_async", "get_children_async", "exists_async")
WAIT_S = 30.0
IDLE_S = 20.0  # a window without changes: the periodic re-reads (every 5 s) show


class ReadCounter:
    """Counts the read requests one KazooClient sends (wraps its async read methods)."""

    def __init__(self, client: KazooClient) -> None:
        self.calls: Counter[str] = Counter()
        for name in READS:
            setattr(client, name, self._counting(name, getattr(client, name)))

    def _counting(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return method(*args, **kwargs)
        return counted

    @property
    def total(self) -> int:
        return sum(self.calls.values())


def member_data(index: int) -> bytes:
    """A node's member znode data, as a node of this tree writes it (about 100 bytes)."""
    return json.dumps({"addr": f"10.0.{index // 250}.{index % 250}:7700", "weight": 1.0,
                       "started_at": time.time()}).encode()


def zxid(server: ZooKeeperServer) -> int:
    """The last committed transaction's id (``srvr``): it grows by one per write."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"srvr")
        reply = b"".join(iter(lambda: sock.recv(4096), b"")).decode()
    for line in reply.splitlines():
        if line.startswith("Zxid: "):
            return int(line.removeprefix("Zxid: "), 16)
    raise RuntimeError(f"srvr gave no Zxid: {reply!r}")


def reads_per_change(hosts: str, members: int, changes: int) -> dict[str, Any]:
    """Reads one watching process makes per join and per leave, with ``members`` members."""
    names = Names(f"zkreads{members}x{time.monotonic_ns()}")
    registrar = connect_zookeeper(hosts)
    watcher = connect_zookeeper(hosts)
    try:
        for i in range(members):
            registrar.create(names.member(f"node-{i}"), member_data(i), ephemeral=True,
                             makepath=True)
        counter = ReadCounter(watcher)
        membership = Membership(watcher, names.cluster).start()
        membership.wait_for(lambda ring: len(ring) == members, WAIT_S)
        result: dict[str, Any] = {"members": members, "changes": changes,
                                  "first_read": counter.total}
        try:
            # Each join is followed by that member's leave: every change is made at N members.
            reads = dict.fromkeys(("join", "leave"), 0)
            seconds = dict.fromkeys(("join", "leave"), 0.0)
            for step in range(changes):
                node_id = f"extra-{step}"
                for kind in ("join", "leave"):
                    before, started = counter.total, time.perf_counter()
                    if kind == "join":
                        registrar.create(names.member(node_id), member_data(members + step),
                                         ephemeral=True)
                        membership.wait_for(lambda r, n=node_id: n in r.members, WAIT_S)
                    else:
                        registrar.delete(names.member(node_id))
                        membership.wait_for(lambda r, n=node_id: n not in r.members, WAIT_S)
                    reads[kind] += counter.total - before
                    seconds[kind] += time.perf_counter() - started
            for kind in ("join", "leave"):
                result[f"reads_per_{kind}"] = reads[kind] / changes
                result[f"ms_per_{kind}"] = seconds[kind] * 1000 / changes
            before = counter.total
            time.sleep(IDLE_S)
            result["idle_reads_per_s"] = (counter.total - before) / IDLE_S
        finally:
            membership.stop()
        result["calls"] = dict(counter.calls)
        return result
    finally:
        for client in (registrar, watcher):
            client.stop()
            client.close()


def read_rate(hosts: str, reads: int = 20_000) -> float:
    """Member-znode reads/s one client gets from one server, pipelined 1,000 at a time
    (kazoo's Python is the limit: a floor of what the server carries)."""
    client = connect_zookeeper(hosts)
    try:
        path = f"/zkreads-rate-{time.monotonic_ns()}"
        client.create(path, member_data(0))
        started = time.perf_counter()
        for _ in range(reads // 1_000):
            for result in [client.get_async(path) for _ in range(1_000)]:
                result.get(timeout=WAIT_S)
        rate = reads / (time.perf_counter() - started)
        client.delete(path)
        return rate
    finally:
        client.stop()
        client.close()


def writes_per_change(server: ZooKeeperServer, redis: str) -> dict[str, int]:
    """ZooKeeper writes while a real node joins, drains, and is killed (session expiry)."""
    with LocalCluster(nodes=1, coordinators=1, zk=server.address, redis=redis,
                      node_args=["--zk-session-timeout", "2"]) as local:
        time.sleep(1.0)  # let start-up writes settle (none are expected after it)
        settled = zxid(server)
        time.sleep(2.0)
        idle = zxid(server) - settled
        for name in ("node-first", "node-join"):  # the first drain also makes a parent znode
            before = zxid(server)
            local.start_node(name)
            joined = zxid(server) - before
            # SIGTERM drains once the node serves (its signal handlers are set just after).
            wait_until(lambda log=local.nodes[name].log_path: "serving on" in log.read_text(),
                       WAIT_S, f"{name} to serve")
            time.sleep(0.5)
            before = zxid(server)
            code = local.stop_node(name)
            assert code == 0, f"{name} drained with exit code {code}:\n{local.nodes[name].log_tail()}"
            drained = zxid(server) - before
        local.start_node("node-crash")
        before = zxid(server)
        local.stop_node("node-crash", sig=signal.SIGKILL)
        wait_until(lambda: "node-crash" not in local.members(), WAIT_S, "the session to expire")
        crashed = zxid(server) - before
    return {"idle_2s": idle, "join": joined, "drain": drained, "crash": crashed}


def run(members: list[int], changes: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="ringpool-zkreads-") as tmp:
        workdir = Path(tmp)
        server = ZooKeeperServer(workdir).start()
        redis = None
        try:
            reads = [reads_per_change(server.address, n, changes) for n in members]
            rate = read_rate(server.address)
            redis = RedisServer(workdir).start()
            writes = writes_per_change(server, redis.url)
        finally:
            if redis is not None:
                redis.stop()
            server.stop()
    return {"reads": reads, "writes": writes, "server_reads_per_s_one_client": rate}


def source() -> str:
    """Which commit's membership code ran, and whether its tree had local changes."""
    import ringpool

    root = Path(ringpool.__file__).resolve().parents[2]

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True,
                              text=True).stdout.strip()

    changed = "+local changes" if git("status", "--porcelain", "sdk") else ""
    return f"{git('rev-parse', '--short', 'HEAD')}{changed}"


def format_table(results: dict[str, Any]) -> str:
    lines = [f"{'label':<8} {'members':>7} {'first read':>10} {'reads/join':>10} "
             f"{'reads/leave':>11} {'idle reads/s':>12}"]
    for label, result in results.items():
        for row in result["reads"]:
            lines.append(f"{label:<8} {row['members']:>7} {row['first_read']:>10} "
                         f"{row['reads_per_join']:>10.1f} {row['reads_per_leave']:>11.1f} "
                         f"{row['idle_reads_per_s']:>12.2f}")
    for label, result in results.items():
        w = result["writes"]
        lines.append(f"{label}: ZooKeeper writes per node join {w['join']}, drain {w['drain']}, "
                     f"crash {w['crash']} (idle cluster, 2 s: {w['idle_2s']}); one client reads "
                     f"{result.get('server_reads_per_s_one_client', 0):,.0f} znodes/s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.zk_reads",
                                     description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--members", default="10,50")
    parser.add_argument("--changes", type=int, default=10)
    parser.add_argument("--label", default="after")
    parser.add_argument("--json", type=Path, default=RESULTS / "zk_reads.json")
    args = parser.parse_args(argv)
    result = run([int(n) for n in args.members.split(",")], args.changes)
    result["source"] = source()
    merged = saved(args.json)
    merged[args.label] = result
    print(format_table(merged))
    save(args.json, merged)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
